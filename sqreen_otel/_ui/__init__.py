"""The web Event Explorer (``sqreen-otel ui``): ``server`` (HTTP, token, CSP, host checks),
``api`` (the JSON endpoints over the explorer's queries and the action store), ``static/`` (the
page, its script and its style, shipped in the package)."""
