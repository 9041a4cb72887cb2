"""`anchord replay de-2026-05-05`: the .de incident of 2026-05-05 replayed on this machine.

The real resolver (`anchord serve`) and the testbed (a signed root/de/com world) run as
subprocesses over loopback sockets on one simulated clock; asyncio clients in the replay
process ask Zipf-popular names and retry on SERVFAIL; the timeline breaks de, adds an NTA
through the control API, repairs de and waits for the NTA's recheck. Everything is written
to DIR (events.csv, upstream.csv, summary.json, report.html and its PNGs).

Modules: timeline (simulated time and the scenario), world (the testbed subprocess and its
upstream counter), clients (UDP clients), record (CSV), summary (the numbers), report
(charts and HTML), command (the click command and the orchestration).
"""
