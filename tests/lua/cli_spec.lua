-- cli_spec.lua: the `deepdance` command line and the piped REPL, run as a
-- child process. Run from the repo root: ./deepdance /usr/bin/busted tests/lua
-- ($DEEPDANCE_BIN overrides which binary is tested).

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function binary_path()
  local env = os.getenv("DEEPDANCE_BIN")
  if env and env ~= "" then return env end
  local home = rawget(_G, "dd") and dd.home
  if home and file_exists(home .. "/deepdance") then return home .. "/deepdance" end
  return "./deepdance"
end

local BIN = binary_path()

local helpers = dofile("tests/lua/support/helpers.lua")
local quote = helpers.quote
local slurp = helpers.slurp

local function write_temp(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- Runs `BIN args` through the shell with the given stdin text (nil: /dev/null).
-- Returns stdout, stderr and the exit status.
local function run(args, stdin)
  local errpath = os.tmpname()
  local inpath = stdin and write_temp(stdin)
  local cmd = quote(BIN) .. " " .. args .. " <" .. (inpath and quote(inpath) or "/dev/null")
      .. " 2>" .. quote(errpath)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, how, code = p:close()
  local err = slurp(errpath)
  os.remove(errpath)
  if inpath then os.remove(inpath) end
  assert(how == "exit", "deepdance died from signal " .. tostring(code) .. ": " .. err)
  return out, err, code
end

describe("deepdance command line", function()
  local temps = {}
  local function script(text)
    local path = write_temp(text)
    temps[#temps + 1] = path
    return path
  end
  teardown(function()
    for _, p in ipairs(temps) do os.remove(p) end
  end)

  it("builds the arg table like lua", function()
    local s = script([[
      local n = select("#", ...)
      print(arg[0], arg[1], arg[2], #arg, arg[-1], n, ...)
    ]])
    local out, err, code = run(quote(s) .. " one 'two words'")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal(table.concat({s, "one", "two words", "2", BIN, "2", "one", "two words"}, "\t")
      .. "\n", out)
  end)

  it("puts the interpreter and options at negative indices", function()
    local s = script("print(arg[-3], arg[-2], arg[-1], arg[0], arg[1])")
    local out, _, code = run("-e 'x=1' " .. quote(s) .. " a")
    assert.are.equal(0, code)
    assert.are.equal(table.concat({BIN, "-e", "x=1", s, "a"}, "\t") .. "\n", out)
  end)

  it("skips a shebang line", function()
    local s = script("#!/usr/bin/env deepdance\nprint('shebang ok')\n")
    local out, err, code = run(quote(s))
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("shebang ok\n", out)
  end)

  it("runs -e code, several times and before a script", function()
    local out, _, code = run("-e 'print(1+1)'")
    assert.are.equal(0, code)
    assert.are.equal("2\n", out)

    out = run("-e 'x = 20' -e 'print(x + 1)'")
    assert.are.equal("21\n", out)

    local s = script("print(y * 2)")
    out = run("-e 'y = 5' " .. quote(s))
    assert.are.equal("10\n", out)
  end)

  it("loads the dd library for -e", function()
    local out, err, code = run("-e 'print(type(dd), dd.version)'")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("^table\t%d+%.%d+%.%d+\n$", out)
  end)

  it("reads a script from stdin with -", function()
    local out, _, code = run("- a b", "print(arg[0], ...)")
    assert.are.equal(0, code)
    assert.are.equal("-\ta\tb\n", out)
  end)

  it("prints the version", function()
    local out, _, code = run("--version")
    assert.are.equal(0, code)
    assert.matches("^deepdance %d+%.%d+%.%d+ %(Lua 5%.4%.%d+[,)]", out)
    if rawget(_G, "dd") then
      assert.are.equal("deepdance " .. dd.version .. " ", out:sub(1, #dd.version + 11))
    end
  end)

  it("prints usage for --help", function()
    local out, _, code = run("--help")
    assert.are.equal(0, code)
    assert.matches("^usage: deepdance", out)
    assert.matches("%-e code", out)
  end)

  it("rejects an unknown option with exit status 2", function()
    local out, err, code = run("--bogus")
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.matches("'%-%-bogus'", err)
    assert.matches("usage:", err)

    _, err, code = run("-e")
    assert.are.equal(2, code)
    assert.matches("'%-e' needs an argument", err)
  end)

  it("exits 1 with a traceback when a script fails", function()
    local s = script("local function inner() error('boom in script') end\ninner()\n")
    local out, err, code = run(quote(s))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("boom in script", err, 1, true)
    assert.matches("stack traceback:", err, 1, true)
    assert.matches("'inner'", err, 1, true)
  end)

  it("exits 1 when a script does not compile or does not exist", function()
    local s = script("this is not lua\n")
    local _, err, code = run(quote(s))
    assert.are.equal(1, code)
    assert.matches("syntax error", err, 1, true)

    _, err, code = run("/nonexistent/script.lua")
    assert.are.equal(1, code)
    assert.matches("cannot open /nonexistent/script.lua", err, 1, true)
  end)

  it("exits 1 with a traceback when -e code fails, and skips what follows", function()
    local s = script("print('must not run')")
    local out, err, code = run("-e \"error('bad -e')\" " .. quote(s))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("bad -e", err, 1, true)
    assert.matches("stack traceback:", err, 1, true)
  end)

  it("passes os.exit status through", function()
    local _, _, code = run("-e 'os.exit(3)'")
    assert.are.equal(3, code)
  end)
end)

describe("piped REPL", function()
  it("prints the value of an expression", function()
    local out, err, code = run("", "1+1\n")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("2\n", out)
  end)

  it("prints several results separated by tabs", function()
    local out = run("", "return 1, 'a', nil\n")
    assert.are.equal("1\ta\tnil\n", out)
  end)

  it("runs statements and keeps globals between lines", function()
    local out = run("", "x = 6\nprint(x * 7)\n")
    assert.are.equal("42\n", out)
  end)

  it("prints an error and goes on with the next line", function()
    local out, err, code = run("", "error('first fails')\nprint('second runs')\n")
    assert.are.equal(0, code)
    assert.are.equal("second runs\n", out)
    assert.matches("first fails", err, 1, true)
    assert.matches("stack traceback:", err, 1, true)
  end)

  it("reads a multi-line statement", function()
    local out, err = run("", "for i=1,2 do\nprint(i)\nend\n")
    assert.are.equal("", err)
    assert.are.equal("1\n2\n", out)
  end)

  it("reports a statement left open at end of input", function()
    local out, err, code = run("", "for i=1,2 do\nprint(i)\n")
    assert.are.equal(0, code)
    assert.are.equal("", out)
    assert.matches("'end' expected", err, 1, true)
  end)

  it("prints something readable for a table", function()
    local out = run("", "{1, 2}\n")
    assert.is_true(#out > 1)
    assert.are.equal("\n", out:sub(-1))
  end)

  it("enters the REPL after -e with -i", function()
    local out, _, code = run("-e 'z = 7' -i", "z * 6\n")
    assert.are.equal(0, code)
    assert.are.equal("42\n", out)
  end)

  it("exits 0 at end of input", function()
    local out, err, code = run("", "")
    assert.are.equal(0, code)
    assert.are.equal("", out)
    assert.are.equal("", err)
  end)
end)
