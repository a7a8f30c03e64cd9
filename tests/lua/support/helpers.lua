-- Helpers shared by the busted specs: load with
--   local helpers = dofile("tests/lua/support/helpers.lua")
local M = {}

--- error_of(f, ...) -> the message of the error f(...) raises (fails if none).
function M.error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

--- assert_contains(s, part, ...): every part occurs in s, literally.
function M.assert_contains(s, ...)
  for _, part in ipairs({ ... }) do
    assert(s:find(part, 1, true), ("expected %q to contain %q"):format(s, part))
  end
end

function M.slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function M.spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- quote(s): s as one shell word.
function M.quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

--- max_diff(a, b): the largest absolute element difference of two tensors.
function M.max_diff(a, b) return (a - b):abs():max() end

return M
