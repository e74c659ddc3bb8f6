//! Conversation commands: starting conversations, membership, messages, read markers.
//!
//! Messages go through one task per conversation in this process. The task keeps the
//! conversation's membership (folded from `conversation-{id}`) and its last seq, and
//! appends whatever messages arrived meanwhile as one append: a hot group's senders
//! share one write and never make each other retry. Before each batch the task reads
//! what `conversation-{id}` gained since it last looked (one read per batch, not per
//! message), so a member removed by any process stops sending from the removal on. (A
//! store no other process appends to (SQLite) needs no such read: the membership
//! commands of this process tell the task, which reads the stream again only then.) The
//! batch is appended without an expected version: the store numbers the events of the
//! messages stream, a message's seq is its version + 1, so the tasks of several
//! processes interleave their batches and never retry.
//!
//! Membership commands run through the ordinary load-decide-append pipeline on
//! `conversation-{id}`; the task learns of them at its next batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use plaza_domain::accounts::user_stream;
use plaza_domain::conversations::{
    Body, Conversation, ConversationCommand, Description, Kind, MAX_ADDED_AT_ONCE, MarkRead, MessageChanges, MessageCommand, ReadMarker, Role,
    SentMessage, Title, attachment_url, conversation_stream, direct_conversation_id, message_stream, messages_stream, read_marker_stream,
};
use plaza_domain::{Aggregate, DomainError, Event, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use uuid::Uuid;

use crate::CommandError;
use crate::pipeline::{CommandContext, Outcome, Pipeline};

/// Jobs one batch takes at most.
const MAX_BATCH: usize = 1024;
/// A task with nothing to do for this long stops (the next job starts a new one).
const IDLE: Duration = Duration::from_secs(60);
/// Messages this process sent that it can find without the read models.
const RECENT: usize = 100_000;
/// How long an edit or deletion waits for the read models to learn of a message sent
/// by another process.
const LOCATE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct ConversationSettings {
    pub max_members: usize,
    pub edit_window: Duration,
}

impl Default for ConversationSettings {
    fn default() -> Self {
        Self { max_members: 10_000, edit_window: Duration::from_secs(900) }
    }
}

/// Finds a message's conversation and seq (the read models, in practice).
#[async_trait::async_trait]
pub trait MessageIndex: Send + Sync + 'static {
    async fn locate(&self, message_id: Uuid) -> Result<Option<(Uuid, u64)>, CommandError>;
}

/// A conversation a command started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub conversation_id: Uuid,
    pub position: u64,
    /// False when it existed already (a direct conversation asked for again).
    pub created: bool,
}

/// A stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub message_id: Uuid,
    pub seq: u64,
    pub position: u64,
}

/// What a member sees of a conversation: their role, its kind and its last seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub role: Role,
    pub kind: Kind,
    pub last_seq: u64,
}

/// A message to send.
pub struct Draft<'a> {
    pub body: &'a str,
    pub reply_to: Option<Uuid>,
    pub attachment_url: Option<&'a str>,
}

#[derive(Clone)]
pub struct Conversations {
    pipeline: Pipeline,
    settings: ConversationSettings,
    index: Arc<dyn MessageIndex>,
    tasks: Arc<Mutex<Tasks>>,
    recent: Arc<Mutex<HashMap<Uuid, (Uuid, u64)>>>,
}

#[derive(Default)]
struct Tasks {
    running: HashMap<Uuid, mpsc::Sender<Job>>,
    /// The map is swept of stopped tasks when it grows past this.
    sweep_at: usize,
}

enum Job {
    Send {
        message: Message,
        reply: oneshot::Sender<Result<Sent, CommandError>>,
    },
    Look {
        user_id: Uuid,
        reply: oneshot::Sender<Result<Membership, CommandError>>,
    },
    /// The conversation's stream changed (a membership command of this process).
    Changed,
}

struct Message {
    message_id: Uuid,
    /// Sent with an idempotency key: a repeat finds the stored message.
    keyed: bool,
    sender_id: Uuid,
    body: Body,
    reply_to: Option<Uuid>,
    attachment_url: Option<String>,
    metadata: Metadata,
}

impl Conversations {
    pub fn new(store: Arc<dyn EventStore>, index: Arc<dyn MessageIndex>, settings: ConversationSettings) -> Self {
        Self { pipeline: Pipeline { store }, settings, index, tasks: Arc::default(), recent: Arc::default() }
    }

    /// Starts the caller's direct conversation with `other_id`, or finds it.
    pub async fn start_direct(&self, other_id: Uuid, ctx: &CommandContext) -> Result<Started, CommandError> {
        let user_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        if other_id != user_id && !self.pipeline.exists(&user_stream(other_id)).await? {
            return Err(DomainError::UserNotFound.into());
        }
        let conversation_id = direct_conversation_id(user_id, other_id);
        let stream = conversation_stream(conversation_id);
        let existed = self.pipeline.exists(&stream).await?;
        let start = |_: &Conversation| ConversationCommand::StartDirect { conversation_id, user_id, other_id };
        let Outcome { position } = self.pipeline.execute(&stream, ctx, start).await?;
        Ok(Started { conversation_id, position, created: !existed })
    }

    pub async fn start_group(&self, title: &str, description: &str, member_ids: &[Uuid], ctx: &CommandContext) -> Result<Started, CommandError> {
        let created_by = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let (title, description) = (Title::parse(title)?, Description::parse(description)?);
        self.check_users(member_ids).await?;
        let conversation_id = ctx.derived_id("conversation-id").unwrap_or_else(Uuid::now_v7);
        let max_members = self.settings.max_members;
        let start = |_: &Conversation| ConversationCommand::StartGroup {
            conversation_id,
            created_by,
            title: title.clone(),
            description: description.clone(),
            member_ids: member_ids.to_vec(),
            max_members,
        };
        let Outcome { position } = self.pipeline.execute(&conversation_stream(conversation_id), ctx, start).await?;
        Ok(Started { conversation_id, position, created: true })
    }

    pub async fn update(
        &self,
        conversation_id: Uuid,
        title: Option<&str>,
        description: Option<&str>,
        ctx: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let title = title.map(Title::parse).transpose()?;
        let description = description.map(Description::parse).transpose()?;
        let update = |_: &Conversation| ConversationCommand::Update { actor, title: title.clone(), description: description.clone() };
        self.change(conversation_id, ctx, update).await
    }

    pub async fn add_members(&self, conversation_id: Uuid, user_ids: &[Uuid], ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        // Who may add is checked before the users are looked up: a non-member learns
        // nothing, not even which users exist.
        let seq = self.membership(conversation_id, actor).await?.last_seq;
        self.check_users(user_ids).await?;
        let max_members = self.settings.max_members;
        let add = |_: &Conversation| ConversationCommand::AddMembers { actor, user_ids: user_ids.to_vec(), max_members, seq };
        self.change(conversation_id, ctx, add).await
    }

    pub async fn remove_member(&self, conversation_id: Uuid, user_id: Uuid, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        self.change(conversation_id, ctx, |_: &Conversation| ConversationCommand::RemoveMember { actor, user_id }).await
    }

    pub async fn set_role(&self, conversation_id: Uuid, user_id: Uuid, role: &str, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let role = Role::parse(role)?;
        self.change(conversation_id, ctx, |_: &Conversation| ConversationCommand::SetRole { actor, user_id, role }).await
    }

    /// A membership command; `conversation_not_found` when there is no such conversation.
    async fn change(
        &self,
        conversation_id: Uuid,
        ctx: &CommandContext,
        command: impl Fn(&Conversation) -> ConversationCommand,
    ) -> Result<Outcome, CommandError> {
        let stream = conversation_stream(conversation_id);
        if !self.pipeline.exists(&stream).await? {
            return Err(DomainError::ConversationNotFound.into());
        }
        let outcome = self.pipeline.execute(&stream, ctx, command).await?;
        // Before answering: whatever is sent after this answer sees the change.
        let running = self.tasks.lock().expect("tasks lock").running.get(&conversation_id).cloned();
        if let Some(queue) = running {
            let _ = queue.send(Job::Changed).await;
        }
        Ok(outcome)
    }

    /// Every user must exist: `user_not_found` otherwise.
    async fn check_users(&self, user_ids: &[Uuid]) -> Result<(), CommandError> {
        if user_ids.len() > MAX_ADDED_AT_ONCE {
            return Err(DomainError::InvalidConversation("at most 1000 users at once").into());
        }
        for user_id in user_ids {
            if !self.pipeline.exists(&user_stream(*user_id)).await? {
                return Err(DomainError::UserNotFound.into());
            }
        }
        Ok(())
    }

    /// Sends a message; answers once it is durable.
    pub async fn send(&self, conversation_id: Uuid, draft: Draft<'_>, ctx: &CommandContext) -> Result<Sent, CommandError> {
        let sender_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let body = Body::parse(draft.body)?;
        let attachment_url = draft.attachment_url.map(attachment_url).transpose()?;
        if let Some(reply_to) = draft.reply_to {
            // Checked against the membership first, so a non-member learns nothing.
            self.membership(conversation_id, sender_id).await?;
            match self.locate(reply_to).await? {
                Some((conversation, _)) if conversation == conversation_id => {}
                _ => return Err(DomainError::InvalidMessage("reply_to must be a message of this conversation").into()),
            }
        }
        let message = Message {
            message_id: ctx.derived_id("message-id").unwrap_or_else(Uuid::now_v7),
            keyed: ctx.idempotency.is_some(),
            sender_id,
            body,
            reply_to: draft.reply_to,
            attachment_url,
            metadata: ctx.metadata(),
        };
        self.submit(conversation_id, |reply| Job::Send { message, reply }).await
    }

    /// The user's role, the conversation's kind and last seq; `conversation_not_found`
    /// for anyone who is not a member.
    pub async fn membership(&self, conversation_id: Uuid, user_id: Uuid) -> Result<Membership, CommandError> {
        self.submit(conversation_id, |reply| Job::Look { user_id, reply }).await
    }

    pub async fn edit(&self, message_id: Uuid, body: &str, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let body = Body::parse(body)?;
        let (message, _) = self.sent_message(message_id, actor).await?;
        let (now, window) = (Utc::now(), chrono::Duration::from_std(self.settings.edit_window).unwrap_or(chrono::Duration::MAX));
        let edit = |_: &MessageChanges| MessageCommand::Edit { message: message.clone(), actor, body: body.clone(), now, window };
        self.pipeline.execute(&message_stream(message_id), ctx, edit).await
    }

    pub async fn delete_message(&self, message_id: Uuid, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let (message, membership) = self.sent_message(message_id, actor).await?;
        let delete = |_: &MessageChanges| MessageCommand::Delete { message: message.clone(), actor, role: membership.role, kind: membership.kind };
        self.pipeline.execute(&message_stream(message_id), ctx, delete).await
    }

    /// Moves the caller's read marker forward to `seq`.
    pub async fn mark_read(&self, conversation_id: Uuid, seq: u64, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let user_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let mut last_seq = self.membership(conversation_id, user_id).await?.last_seq;
        if seq > last_seq {
            // Another process may have stored messages this one has not heard of.
            last_seq = last_version(&*self.pipeline.store, &messages_stream(conversation_id)).await?.map_or(0, |v| v + 1);
        }
        let mark = |_: &ReadMarker| MarkRead { conversation_id, user_id, seq, last_seq };
        self.pipeline.execute(&read_marker_stream(conversation_id, user_id), ctx, mark).await
    }

    /// The message as its `MessageSent` event holds it, and the actor's membership of its
    /// conversation; `message_not_found` for a message the actor cannot see.
    async fn sent_message(&self, message_id: Uuid, actor: Uuid) -> Result<(SentMessage, Membership), CommandError> {
        let not_found = || CommandError::from(DomainError::MessageNotFound);
        let (conversation_id, seq) = self.locate(message_id).await?.ok_or_else(not_found)?;
        let membership = match self.membership(conversation_id, actor).await {
            Err(CommandError::Domain(DomainError::ConversationNotFound)) => return Err(not_found()),
            other => other?,
        };
        let stored = self.pipeline.store.read_stream(&messages_stream(conversation_id), seq - 1, 1).await?;
        let recorded = stored.into_iter().next().filter(|r| r.event_id == message_id).ok_or_else(not_found)?;
        let Event::MessageSent { sender_id, .. } = decode(&recorded)? else { return Err(not_found()) };
        let message = SentMessage { message_id, conversation_id, seq, sender_id, sent_at: recorded.occurred_at };
        Ok((message, membership))
    }

    /// Where a message is: this process's recent messages, else the read models, which
    /// may take a moment to learn of a message another process just sent.
    async fn locate(&self, message_id: Uuid) -> Result<Option<(Uuid, u64)>, CommandError> {
        if let Some(found) = self.recent.lock().expect("recent messages lock").get(&message_id) {
            return Ok(Some(*found));
        }
        let deadline = tokio::time::Instant::now() + LOCATE_WAIT;
        loop {
            if let Some(found) = self.index.locate(message_id).await? {
                return Ok(Some(found));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Hands a job to the conversation's task (starting one when none runs) and waits
    /// for its answer.
    async fn submit<T>(&self, conversation_id: Uuid, job: impl FnOnce(oneshot::Sender<Result<T, CommandError>>) -> Job) -> Result<T, CommandError> {
        let (reply, answer) = oneshot::channel();
        let mut job = job(reply);
        // A task that just stopped for being idle refuses the job: start another.
        for _ in 0..3 {
            let queue = self.task(conversation_id);
            match queue.send(job).await {
                Ok(()) => return answer.await.map_err(|_| CommandError::Internal("the conversation task dropped a job".into()))?,
                Err(mpsc::error::SendError(refused)) => {
                    job = refused;
                    let mut tasks = self.tasks.lock().expect("tasks lock");
                    if tasks.running.get(&conversation_id).is_some_and(|q| q.same_channel(&queue)) {
                        tasks.running.remove(&conversation_id);
                    }
                }
            }
        }
        Err(CommandError::Internal("the conversation task keeps stopping".into()))
    }

    fn task(&self, conversation_id: Uuid) -> mpsc::Sender<Job> {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        if let Some(queue) = tasks.running.get(&conversation_id).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        if tasks.running.len() >= tasks.sweep_at {
            tasks.running.retain(|_, queue| !queue.is_closed());
            tasks.sweep_at = (tasks.running.len() * 2).max(1024);
        }
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        let task = Task {
            conversation_id,
            store: self.pipeline.store.clone(),
            state: Conversation::default(),
            version: None,
            last_seq: None,
            recent: self.recent.clone(),
        };
        tokio::spawn(task.run(jobs));
        tasks.running.insert(conversation_id, queue.clone());
        queue
    }
}

/// One conversation's sender in this process.
struct Task {
    conversation_id: Uuid,
    store: Arc<dyn EventStore>,
    /// The conversation as of `version` of its stream.
    state: Conversation,
    version: Option<u64>,
    /// The last seq as this task knows it (`None` before it looked).
    last_seq: Option<u64>,
    recent: Arc<Mutex<HashMap<Uuid, (Uuid, u64)>>>,
}

impl Task {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        loop {
            let first = match tokio::time::timeout(IDLE, jobs.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                // Idle: refuse new jobs (their senders start a new task), answer the
                // ones that raced in, then stop.
                Err(_) => {
                    jobs.close();
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            // Another process may have changed the membership (a shared store), or this
            // one did: read what the conversation's stream gained.
            let changed = batch.iter().any(|job| matches!(job, Job::Changed));
            if (self.store.shared() || changed || self.last_seq.is_none())
                && let Err(error) = self.refresh().await
            {
                warn!(conversation = %self.conversation_id, %error, "cannot read the conversation");
                self.forget();
                for job in batch {
                    match job {
                        Job::Send { reply, .. } => drop(reply.send(Err(error.copy()))),
                        Job::Look { reply, .. } => drop(reply.send(Err(error.copy()))),
                        Job::Changed => {}
                    }
                }
                continue;
            }
            if !self.state.exists() {
                // Nothing to keep a task for (an unknown id): answer, and stop once the
                // jobs already queued are answered, so made-up ids leave no lingering
                // task. (Those are decided on a fresh read: the conversation may have
                // been started meanwhile.)
                for job in batch {
                    match job {
                        Job::Send { reply, .. } => drop(reply.send(Err(DomainError::ConversationNotFound.into()))),
                        Job::Look { reply, .. } => drop(reply.send(Err(DomainError::ConversationNotFound.into()))),
                        Job::Changed => {}
                    }
                }
                self.forget();
                jobs.close();
                continue;
            }
            let mut sends = Vec::new();
            for job in batch {
                match job {
                    Job::Look { user_id, reply } => {
                        let _ = reply.send(self.look(user_id));
                    }
                    Job::Send { message, reply } => match self.state.role_of(message.sender_id) {
                        Ok(_) => sends.push((message, reply)),
                        Err(refused) => drop(reply.send(Err(refused.into()))),
                    },
                    Job::Changed => {}
                }
            }
            if !sends.is_empty() {
                self.send(sends).await;
            }
        }
    }

    fn forget(&mut self) {
        (self.state, self.version, self.last_seq) = (Conversation::default(), None, None);
    }

    fn look(&self, user_id: Uuid) -> Result<Membership, CommandError> {
        let role = self.state.role_of(user_id)?;
        Ok(Membership { role, kind: self.state.kind, last_seq: self.last_seq.unwrap_or_default() })
    }

    /// Folds in what the conversation's stream gained since the last look; learns the
    /// last seq the first time.
    async fn refresh(&mut self) -> Result<(), CommandError> {
        let stream = conversation_stream(self.conversation_id);
        loop {
            let from = self.version.map_or(0, |v| v + 1);
            let events = self.store.read_stream(&stream, from, 500).await?;
            for recorded in &events {
                self.state = std::mem::take(&mut self.state).evolve(&decode(recorded)?);
                self.version = Some(recorded.version);
            }
            if events.len() < 500 {
                break;
            }
        }
        if self.last_seq.is_none() {
            self.last_seq = Some(last_version(&*self.store, &messages_stream(self.conversation_id)).await?.map_or(0, |v| v + 1));
        }
        Ok(())
    }

    /// Appends the members' messages as one append, numbered after the last seq.
    async fn send(&mut self, sends: Vec<(Message, oneshot::Sender<Result<Sent, CommandError>>)>) {
        let stream = messages_stream(self.conversation_id);
        let mut answers: Vec<Option<Result<Sent, CommandError>>> = (0..sends.len()).map(|_| None).collect();
        // A keyed repeat answers as its first send did: stored before, or earlier in
        // this batch.
        let mut first_of: HashMap<Uuid, usize> = HashMap::new();
        let mut fresh: Vec<usize> = Vec::new();
        for (index, (message, _)) in sends.iter().enumerate() {
            if message.keyed {
                if first_of.contains_key(&message.message_id) {
                    continue;
                }
                first_of.insert(message.message_id, index);
                match self.store.read_event(&stream, message.message_id).await {
                    Ok(Some(stored)) => {
                        answers[index] = Some(Ok(Sent { message_id: message.message_id, seq: stored.version + 1, position: stored.position }));
                        continue;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        answers[index] = Some(Err(error.into()));
                        continue;
                    }
                }
            }
            fresh.push(index);
        }
        if !fresh.is_empty() {
            match self.append(&stream, &sends, &fresh).await {
                Ok((first_seq, position)) => {
                    let mut recent = self.recent.lock().expect("recent messages lock");
                    if recent.len() + fresh.len() > RECENT {
                        recent.clear();
                    }
                    for (offset, index) in fresh.iter().enumerate() {
                        let message_id = sends[*index].0.message_id;
                        let seq = first_seq + offset as u64;
                        recent.insert(message_id, (self.conversation_id, seq));
                        answers[*index] = Some(Ok(Sent { message_id, seq, position }));
                    }
                }
                Err(error) => {
                    warn!(conversation = %self.conversation_id, %error, messages = fresh.len(), "messages not stored");
                    self.forget();
                    for index in &fresh {
                        answers[*index] = Some(Err(error.copy()));
                    }
                }
            }
        }
        for (index, (message, reply)) in sends.into_iter().enumerate() {
            let answer = match answers[index].take() {
                Some(answer) => answer,
                // A repeat within the batch: the first one's answer.
                None => match &answers[first_of[&message.message_id]] {
                    Some(Ok(sent)) => Ok(*sent),
                    Some(Err(error)) => Err(error.copy()),
                    None => Err(CommandError::Internal("a message was neither stored nor refused".into())),
                },
            };
            let _ = reply.send(answer);
        }
    }

    /// Appends the `fresh` messages as one append; the store numbers them after
    /// whatever any process appended before. Answers the first one's seq and the
    /// append's last position.
    async fn append(
        &mut self,
        stream: &str,
        sends: &[(Message, oneshot::Sender<Result<Sent, CommandError>>)],
        fresh: &[usize],
    ) -> Result<(u64, u64), CommandError> {
        let now = Utc::now();
        let events: Vec<NewEvent> = fresh
            .iter()
            .map(|index| {
                let message = &sends[*index].0;
                let event = Event::MessageSent {
                    message_id: message.message_id,
                    conversation_id: self.conversation_id,
                    sender_id: message.sender_id,
                    body: message.body.as_str().to_owned(),
                    reply_to: message.reply_to,
                    attachment_url: message.attachment_url.clone(),
                };
                NewEvent::new(message.message_id, &event, message.metadata.clone(), now)
            })
            .collect();
        let appended = self.store.append(stream, ExpectedVersion::Any, events).await?;
        self.last_seq = Some(appended.stream_version + 1);
        Ok((appended.stream_version + 2 - fresh.len() as u64, appended.last_position))
    }
}

/// The version of a stream's last event, found with a few reads (the store keeps no
/// stream length): double the probe until it finds nothing, then bisect.
async fn last_version(store: &dyn EventStore, stream: &str) -> Result<Option<u64>, CommandError> {
    let exists = |version: u64| async move { Ok::<_, CommandError>(!store.read_stream(stream, version, 1).await?.is_empty()) };
    if !exists(0).await? {
        return Ok(None);
    }
    let (mut low, mut high) = (0u64, 1u64);
    while exists(high).await? {
        low = high;
        high *= 2;
    }
    // `low` exists, `high` does not.
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if exists(middle).await? { low = middle } else { high = middle }
    }
    Ok(Some(low))
}

fn decode(recorded: &RecordedEvent) -> Result<Event, CommandError> {
    recorded.decode().map_err(|e| StoreError::Corrupt(e.to_string()).into())
}
