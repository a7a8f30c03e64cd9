-- deepdance.cli: strict command lines for experiment scripts, on lua-argparse
-- (Debian's lua-argparse). An unknown or malformed option is an error that
-- names it and shows the usage with every known option, so a typo in a sweep
-- fails the trial instead of silently using a default.
--   local p = dd.cli.parser("ingest.lua", "Decode a video into a frame cache")
--   p:option("--fps", "frames per second", "3"):convert(tonumber)
--   local opts = dd.cli.parse(p, arg)
local dd = ...
local ok, argparse = pcall(require, "argparse")

local cli = {}

function cli.parser(name, description)
  if not ok then error("dd.cli needs lua-argparse (Debian package lua-argparse): " .. tostring(argparse), 2) end
  return argparse(name, description):add_help(true)
end

--- parse(parser, arg) -> options table, or a Lua error with the usage.
function cli.parse(parser, args)
  local list = {}
  for i = 1, #(args or {}) do list[i] = args[i] end
  local good, result = parser:pparse(list)
  if good then return result end
  if result == "help" or tostring(result):match("^Usage") then
    io.stdout:write(parser:get_help(), "\n")
    os.exit(0)
  end
  error(tostring(result) .. "\n" .. parser:get_usage(), 0)
end

dd.cli = cli
return cli
