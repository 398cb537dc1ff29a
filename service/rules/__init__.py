"""The service's rules as plain code: no asyncio, threads, sockets or clock reads.

Each module is a small state machine that is fed what happened (a frame taken, a result back, a
message written, a connection lost) with the time passed in (``now``, seconds of whatever
monotonic clock the caller uses), and returns what the caller should do. The asyncio adapters in
``service/`` (the batcher task, ``StreamState``, the MQTT publisher) feed them and act on the answer,
so every policy is tested in microseconds without a broker or an event loop.

- ``sequencer``: detection results back into strict frame order; gaps, late results.
- ``lifecycle``: per-frame tracks -> ``track_started`` / ``track_ended``.
- ``batching``: which ready frames of which streams form the next detector batch, and until when.
- ``outbox``: the MQTT outbox (priorities, bounds, window, requeue on a lost connection, drops).
- ``sampling``: which frames of a source to detect, to reach ``detect_fps``.

The retry-delay rule is ``detector_client.backoff.Backoff`` (remote detector calls use it too).
"""
