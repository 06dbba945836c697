-- Device authorizations; appends each device_code to the file $CODES.
wrk.method = "POST"
wrk.path = "/oauth2/device_authorization"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "client_id=tv&scope=openid"
local f
function init(args) f = io.open(os.getenv("CODES"), "a") end
function response(status, headers, body)
  local c = body:match('"device_code":"([^"]+)"')
  if c then f:write(c, "\n"); f:flush() end
end
