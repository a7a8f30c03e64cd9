-- experiments/sweeps/trial_quadratic.lua: a trial script that takes a fraction of
-- a second, for trying sweeps out and for the tests. "Trains" for --epochs
-- epochs; its loss at epoch e is (x - 1)^2 + (y + 2)^2 + 1/e, best at x = 1,
-- y = -2, and it reports every epoch with dd.report (so successive halving
-- can stop it).
--   deepdance experiments/sweeps/trial_quadratic.lua --x 0.5 --y=-1 --epochs 9   (--y=-1: a bare -1 reads as an option)
local p = dd.cli.parser("trial_quadratic.lua", "A toy trial: minimise (x - 1)^2 + (y + 2)^2.")
p:option("--x", "first coordinate", "0"):convert(tonumber)
p:option("--y", "second coordinate", "0"):convert(tonumber)
p:option("--epochs", "epochs to 'train'", "9"):convert(math.tointeger)
p:option("--sleep", "seconds each epoch takes", "0"):convert(tonumber)
p:option("--fail-above", "raise an error when x is above this (to try failed trials)"):convert(tonumber)
p:option("--out", "a directory to write final.txt into")
local o = dd.cli.parse(p, arg)
if not o then return end

if o.fail_above and o.x > o.fail_above then
  error(("quadratic: x = %g is above --fail-above %g"):format(o.x, o.fail_above), 0)
end
local loss
for epoch = 1, o.epochs do
  if o.sleep > 0 then dd.process.sleep(o.sleep) end
  loss = (o.x - 1) ^ 2 + (o.y + 2) ^ 2 + 1 / epoch
  print(("epoch %d: loss %.6f"):format(epoch, loss))
  if not dd.report{ epoch = epoch, loss = loss } then break end
end
if o.out then
  local f = assert(io.open(o.out .. "/final.txt", "w"))
  f:write(("%.17g\n"):format(loss))
  f:close()
end
