"""Python's executors, measured as the offload bench measures offload: the peer rows of figures
1 to 4. Run by benches/offload.rs as `python3 python_executors.py REPS`; prints one line per
figure, its name then one value per repetition (seconds per call, or calls per second), and a
last line that names the interpreter and the process pool's start method."""

import asyncio
import multiprocessing
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor


def nothing():
    return None


def add(a, b):
    return a + b


def byte_count(data):
    return len(data)


async def median_call(loop, pool, function, args, calls):
    """The median time of `calls` awaited calls, one after the other."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await loop.run_in_executor(pool, function, *args)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def in_flight(loop, pool, calls):
    """Calls per second with `calls` calls awaited together, as `asyncio.gather` does."""
    started = time.perf_counter()
    await asyncio.gather(*(loop.run_in_executor(pool, add, i, 1) for i in range(calls)))
    return calls / (time.perf_counter() - started)


async def main(reps):
    loop = asyncio.get_running_loop()
    figures = {}
    with ThreadPoolExecutor() as threads:
        await median_call(loop, threads, nothing, (), 300)
        figures["thread_call"] = [
            await median_call(loop, threads, nothing, (), 1000) for _ in range(reps)
        ]
    # Two workers, like offload's default pool on this machine.
    with ProcessPoolExecutor(max_workers=2) as processes:
        await median_call(loop, processes, add, (1, 2), 100)
        figures["process_call"] = [
            await median_call(loop, processes, add, (1, 2), 300) for _ in range(reps)
        ]
        figures["process_in_flight"] = [await in_flight(loop, processes, 10_000) for _ in range(3)]
        payload = bytes(range(256)) * (64 << 12)
        await median_call(loop, processes, byte_count, (payload,), 1)
        figures["process_64mib"] = [
            await median_call(loop, processes, byte_count, (payload,), 1) for _ in range(3)
        ]
    for name, values in figures.items():
        print(name, *values)
    method = multiprocessing.get_start_method()
    print("about", platform.python_implementation(), platform.python_version(), f"(start method {method})")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
