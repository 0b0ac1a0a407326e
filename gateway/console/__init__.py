"""The web console: `GET /` serves a static single-page app (gateway/static/), `GET /v1/me`
tells the page what its token may do (`pages`); the live data it shows comes from
`gateway.api.stream`, built by `snapshots`."""
