"""The request path: API calls become live span events on the request span.

api (Sqreen's module functions), builders (the chained API), live_event (one event refined
until its span ends), routing (which span carries an event), request_state (the request a
context serves), validate (argument checks and limits), sampler (carriers survive sampling).
It never imports the export path; it reaches security responses through one function
(``_responses.respond.user_response``, at identify).
"""
