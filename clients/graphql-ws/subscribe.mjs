// Subscribes with the reference graphql-ws client and prints, one JSON line each, what
// it hears: {"next": payload}, {"error": errors}, {"complete": true} or {"closed": code}.
// Exits after COUNT `next` payloads (0: never), or when the subscription ends.
//
//   PLAZA_WS=ws://127.0.0.1:8080/graphql/ws TOKEN=... QUERY='subscription { ... }' \
//   VARIABLES='{"id": "..."}' EXTENSIONS='{"minPosition": 12}' COUNT=3 node subscribe.mjs
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const env = process.env;
const count = Number(env.COUNT ?? 0);
const print = (line) => process.stdout.write(JSON.stringify(line) + '\n');

const client = createClient({
  url: env.PLAZA_WS,
  webSocketImpl: WebSocket,
  connectionParams: { token: env.TOKEN },
  // Report every failure instead of retrying: the tests want to see it.
  retryAttempts: 0,
  lazy: false,
  on: { closed: (event) => print({ closed: event.code }) },
});

let heard = 0;
const done = (code) => {
  client.dispose();
  setTimeout(() => process.exit(code), 50);
};
client.subscribe(
  {
    query: env.QUERY,
    variables: JSON.parse(env.VARIABLES ?? '{}'),
    extensions: JSON.parse(env.EXTENSIONS ?? '{}'),
  },
  {
    next: (payload) => {
      print({ next: payload });
      heard += 1;
      if (count > 0 && heard >= count) done(0);
    },
    error: (error) => {
      print({ error: Array.isArray(error) ? error : { message: String(error?.reason ?? error?.message ?? error), code: error?.code } });
      done(0);
    },
    complete: () => {
      print({ complete: true });
      done(0);
    },
  },
);
