-- The W3C traceparent of the request that created the transfer (00-TRACE-SPAN-FLAGS, written
-- by our own propagator, never a client's text), so that the reconciler's later work on the
-- transfer links to its original trace. NULL when traces are off.
ALTER TABLE transfers ADD COLUMN trace_context TEXT NULL;
