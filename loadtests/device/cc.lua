-- client_credentials requests of the "backend" client (created by run.sh).
wrk.path = "/oauth2/token"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic YmFja2VuZDpiYWNrZW5kLXNlY3JldC0wMTIzNDU2Nzg5"
wrk.body = "grant_type=client_credentials&scope=orders.read"
local shown = false
function response(status, headers, body)
  if status ~= 200 and not shown then shown = true; io.write("first failure: ", status, " ", body, "\n") end
end
