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
  -- argparse's own help action calls os.exit; ours only sets a flag
  local parser = argparse(name, description):add_help(false)
  parser:flag("-h --help", "Show this help message.")
  return parser
end

--- parse(parser, arg) -> options table, or a Lua error with the usage; with
-- -h/--help it prints the help and returns nil (library code never exits:
-- scripts write `local o = dd.cli.parse(p, arg); if not o then return end`).
function cli.parse(parser, args)
  local list = {}
  for i = 1, #(args or {}) do
    list[i] = args[i]
    if args[i] == "--" then break end
    if args[i] == "-h" or args[i] == "--help" then -- before required options are checked
      io.stdout:write(parser:get_help(), "\n")
      return nil
    end
  end
  local good, result = parser:pparse(list)
  if good and result.help then
    io.stdout:write(parser:get_help(), "\n")
    return nil
  end
  if good then
    result.help = nil
    return result
  end
  error(tostring(result) .. "\n" .. parser:get_usage(), 0)
end

dd.cli = cli
return cli
