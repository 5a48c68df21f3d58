"""Paper variants, probes and training-only parts: runnable and tested, never imported
by the runtime of the shipped models (a checkpoint that uses one loads it lazily)."""
