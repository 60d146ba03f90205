"""What a request says about its client: client_ip (resolution, trusted proxies) and
request_context (default properties from HTTP span attributes).
"""
