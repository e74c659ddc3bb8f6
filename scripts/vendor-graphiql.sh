#!/usr/bin/env bash
# scripts/vendor-graphiql.sh — refreshes read-api/assets/graphiql from npm: GraphiQL's
# UMD build (minified with esbuild; the package's own .min.js is not minified), its
# stylesheet, React and ReactDOM's production UMD builds, and their licences. The read
# API embeds these files at build time, so GraphiQL needs nothing from the internet.
# Run by hand when upgrading; the versions are pinned here and in read-api/src/lib.rs.
set -euo pipefail
readonly GRAPHIQL=3.8.3 REACT=18.3.1 ESBUILD=0.25.0
out="$(cd "$(dirname "$0")/.." && pwd)/read-api/assets/graphiql"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" >/dev/null
for package in graphiql react react-dom; do
    mkdir "$package" && tar xzf "$package"-*.tgz -C "$package"
done
npm install --silent --no-audit --no-fund --prefix tools "esbuild@$ESBUILD" >/dev/null
tools/node_modules/.bin/esbuild graphiql/package/graphiql.min.js --minify --legal-comments=none --outfile="$out/graphiql-$GRAPHIQL.min.js"
tools/node_modules/.bin/esbuild graphiql/package/graphiql.min.css --minify --loader:.css=css --outfile="$out/graphiql-$GRAPHIQL.min.css"
cp react/package/umd/react.production.min.js "$out/react-$REACT.min.js"
cp react-dom/package/umd/react-dom.production.min.js "$out/react-dom-$REACT.min.js"
cp graphiql/package/LICENSE "$out/LICENSE-graphiql"
cp react/package/LICENSE "$out/LICENSE-react"
cp react-dom/package/LICENSE "$out/LICENSE-react-dom"
echo "vendored GraphiQL $GRAPHIQL and React $REACT into $out"
