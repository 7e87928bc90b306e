-- perf/conf/post-1m.lua — wrk script: POST a 1 MiB body to /size/0 (the origin sinks it).
wrk.method = "POST"
wrk.path = "/size/0"
wrk.body = string.rep("a", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
