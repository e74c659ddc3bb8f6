//! Feeds: the one command they have restarts a viewer's recommendations. The
//! `recommendations-{user}` stream counts the refreshes; each refresh's seed shuffles the
//! ranking's tie-breaks so the viewer gets a new page sequence.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Aggregate, DomainError, Event};

pub fn recommendations_stream(user_id: Uuid) -> String {
    format!("recommendations-{user_id}")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Recommendations {
    pub refreshes: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Refresh {
    pub user_id: Uuid,
}

impl Aggregate for Recommendations {
    type Command = Refresh;

    fn evolve(mut self, event: &Event) -> Self {
        if let Event::RecommendationsRefreshed { seed, .. } = event {
            self.refreshes = *seed;
        }
        self
    }

    fn decide(&self, command: &Refresh) -> Result<Vec<Event>, DomainError> {
        Ok(vec![Event::RecommendationsRefreshed { user_id: command.user_id, seed: self.refreshes + 1 }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;

    #[test]
    fn every_refresh_has_a_new_seed() {
        let user_id = Uuid::new_v4();
        let first = given::<Recommendations>(&[], Refresh { user_id }).unwrap();
        assert_eq!(first, vec![Event::RecommendationsRefreshed { user_id, seed: 1 }]);
        assert_eq!(given::<Recommendations>(&first, Refresh { user_id }).unwrap(), vec![Event::RecommendationsRefreshed { user_id, seed: 2 }]);
    }
}
