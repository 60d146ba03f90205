"""The Event Explorer's queries (``query``), shared by the terminal (``sqreen-otel events``)
and the browser (``sqreen-otel ui``)."""
