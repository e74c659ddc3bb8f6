//! GraphiQL at `GET /graphql`, from files vendored in `assets/graphiql` (pinned versions,
//! with their licences) and embedded at build time: the page loads nothing from
//! anywhere but this server. `?query=...` opens with that query.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// (file name, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("graphiql-3.8.3.min.js", "text/javascript", include_bytes!("../assets/graphiql/graphiql-3.8.3.min.js")),
    ("graphiql-3.8.3.min.css", "text/css", include_bytes!("../assets/graphiql/graphiql-3.8.3.min.css")),
    ("react-18.3.1.min.js", "text/javascript", include_bytes!("../assets/graphiql/react-18.3.1.min.js")),
    ("react-dom-18.3.1.min.js", "text/javascript", include_bytes!("../assets/graphiql/react-dom-18.3.1.min.js")),
    ("start.js", "text/javascript", START.as_bytes()),
];

/// Starts GraphiQL against this server's `/graphql` and `/graphql/ws`.
const START: &str = r#"(function () {
  var here = new URL(location.href);
  var ws = new URL('/graphql/ws', here);
  ws.protocol = here.protocol === 'https:' ? 'wss:' : 'ws:';
  var fetcher = GraphiQL.createFetcher({ url: new URL('/graphql', here).href, subscriptionUrl: ws.href });
  var props = { fetcher: fetcher, defaultEditorToolbarOpen: true };
  var query = here.searchParams.get('query');
  if (query) props.query = query;
  ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, props));
})();
"#;

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Plaza GraphiQL</title>
<link rel="stylesheet" href="/graphql/assets/graphiql-3.8.3.min.css">
<style>body { margin: 0; height: 100vh; } #graphiql { height: 100vh; }</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL… (it needs JavaScript; POST queries to /graphql otherwise)</div>
<script src="/graphql/assets/react-18.3.1.min.js"></script>
<script src="/graphql/assets/react-dom-18.3.1.min.js"></script>
<script src="/graphql/assets/graphiql-3.8.3.min.js"></script>
<script src="/graphql/assets/start.js"></script>
</body>
</html>
"#;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// One vendored file; the versions are in the names, so they are cached for good.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, bytes)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], *bytes).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
