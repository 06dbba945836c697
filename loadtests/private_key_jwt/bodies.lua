-- wrk script of the private_key_jwt measurement (see setup.py beside it): POST
-- /oauth2/token with client_credentials, closed loop.
--   PK_BODIES  a file of form bodies, one per line, each sent once (private_key_jwt); when
--              the file runs out the last one is repeated, and its refusals (401, a
--              replayed jti) show as non-2xx: such a run is void
--   PK_BASIC   without PK_BODIES: the base64 Basic credentials of a shared-secret client,
--              one fixed request
--   PK_PROOFS  with PK_BASIC: a file of DPoP proofs, one per line, each sent once in a
--              `DPoP` header (the shared-secret request, DPoP-bound); running out repeats
--              the last one, refused as replayed (non-2xx): such a run is void
-- Success: status 200; anything else counts in "non-2xx" (wrk's own summary).
local bodies = nil
local next_body = 1
local proofs = nil
local next_proof = 1

local function lines(path)
  local all = {}
  for line in io.lines(path) do
    all[#all + 1] = line
  end
  return all
end

function init(args)
  local path = os.getenv("PK_BODIES")
  if path then
    bodies = lines(path)
  end
  local proof_path = os.getenv("PK_PROOFS")
  if proof_path then
    proofs = lines(proof_path)
  end
end

function request()
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  if bodies then
    local body = bodies[next_body]
    if body == nil then
      body = bodies[#bodies]
    else
      next_body = next_body + 1
    end
    return wrk.format("POST", "/oauth2/token", headers, body)
  end
  headers["Authorization"] = "Basic " .. os.getenv("PK_BASIC")
  if proofs then
    local proof = proofs[next_proof]
    if proof == nil then
      proof = proofs[#proofs]
    else
      next_proof = next_proof + 1
    end
    headers["DPoP"] = proof
  end
  return wrk.format("POST", "/oauth2/token", headers, "grant_type=client_credentials")
end

function done(summary, latency, requests)
  io.write(string.format("requests %d, non-2xx %d, p50 %.2f ms, p99 %.2f ms\n",
    summary.requests, summary.errors.status, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
