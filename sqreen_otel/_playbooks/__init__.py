"""Playbooks: rules over the recorded events that create security responses, evaluated off
the request path by one evaluator per host (counts shared through Redis across hosts).

``schema`` (the TOML file), ``fields`` (what a rule reads from an event), ``windows`` (sliding
counts and cool-downs, memory or Redis), ``engine`` (events in, firings out), ``react`` (what a
firing does), ``evaluator`` (the store consumer that runs it live).
"""
