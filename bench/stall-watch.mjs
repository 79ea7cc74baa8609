// Event-loop stalls of this process: a 10 ms interval that comes late by more than STALL_MS was held
// up. Each stall records the CPU this process used meanwhile: close to the stall's length means the
// process itself was busy (JavaScript, GC); far less means it was not running (the machine's other work
// had the CPU, or a synchronous wait). Used by bench/open-loop.mjs and bench/gc-observer.mjs.
import { performance } from 'node:perf_hooks';

const TICK_MS = 10;
const STALL_MS = 5;

/** Starts watching; `onStall` (optional) sees each stall as it is found. */
export function startStallWatch(onStall) {
  const list = [];
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  const timer = setInterval(() => {
    const now = performance.now();
    const cpu = process.cpuUsage();
    const late = now - last - TICK_MS;
    if (late > STALL_MS) {
      const stall = {
        at: Math.round((performance.timeOrigin + last + TICK_MS) * 1000) / 1000,
        ms: Math.round(late * 1000) / 1000,
        cpu_ms: Math.round((cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 10) / 100,
      };
      list.push(stall);
      onStall?.(stall);
    }
    last = now;
    lastCpu = cpu;
  }, TICK_MS);
  timer.unref();
  return { list, stop: () => clearInterval(timer) };
}
