"""Audio engines: WAV I/O, G.711, DTMF, voice activity, Vosk recognition, speech synthesis, models."""
