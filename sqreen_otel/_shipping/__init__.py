"""Off the request path: the span processor, the durable queue and the exporters' pipelines.

processor (request binding, span end), spool (staging -> the store), store (the SQLite event
store and queue), drain (remote exporters drain the store), pipeline (in-memory pipelines of
exporter instances), assembly (what ships one provider's events), event_model (security events
read back from spans, scrubbed), scrubbing_exporter (scrubbed span copies), export_result.
"""
