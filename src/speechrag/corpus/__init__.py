"""WikiSpoken: Wikipedia lead passages spoken by TTS voices, the project's benchmark corpus."""
