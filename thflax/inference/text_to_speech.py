"""Text to speech for generation: words -> a 16 kHz wav, offline, with eSpeak NG (`thflax.io.speech`)."""

from __future__ import annotations

from thflax.errors import InputError
from thflax.inference.options import DEFAULT_PITCH, DEFAULT_RATE, DEFAULT_VOICE, SPEECH_PADDING, check_speech_options


def speak_to_wav(text: str, path: str, voice: str = DEFAULT_VOICE, rate: int = DEFAULT_RATE,
                 pitch: int = DEFAULT_PITCH) -> float:
    """Speaks `text` offline with eSpeak NG into a 16 kHz wav at `path`; returns its length in seconds.

    The speech has `SPEECH_PADDING` seconds of silence before and after it. Raises InputError for
    empty text, an unknown voice, a rate or pitch out of range, or text that gives no speech.
    """
    check_speech_options(text, voice, rate, pitch)
    import soundfile as sf

    from thflax.io import speech

    try:
        utt = speech.synthesize(" ".join(text.split()), voice=voice, rate=int(rate), pitch=int(pitch),
                                leading_silence=SPEECH_PADDING[0], trailing_silence=SPEECH_PADDING[1])
    except ValueError as e:
        if "voice" not in str(e):
            raise
        raise InputError(f"unknown voice {voice!r}: eSpeak NG cannot load it (voices include "
                         f"{', '.join(speech.VOICES[:6])})") from e
    except RuntimeError as e:
        raise InputError(f"eSpeak NG made no speech from the text {text[:60]!r}") from e
    try:
        sf.write(path, utt.audio, utt.sample_rate, subtype="PCM_16")
    except (OSError, RuntimeError) as e:
        raise InputError(f"cannot write the speech to {path}: {e}") from e
    return utt.duration
