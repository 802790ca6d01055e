"""Offline speech synthesis with phoneme and word timings (eSpeak NG via ctypes).

eSpeak NG ships as a shared library in the ``espeakng_loader`` wheel. We drive it
in synchronous mode with phoneme events switched on, collect the 16-bit audio and
the events in a callback, and resample the 22050 Hz output to 16 kHz (GRID's
audio rate used by the rest of thflax). The library is loaded afresh for every
utterance (see ``_private_library``) so that output does not depend on what was
synthesised before, which keeps corpora reproducible with any worker count.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import os
import shutil
import tempfile
import threading
import numpy as np

from thflax.io.signals import signals_deferred

SAMPLE_RATE = 16000
#: What `synthesize` speaks with when not told: voice, words per minute and base pitch (0..100).
#: Generation's text-to-speech defaults (`thflax.inference.options`) are these.
DEFAULT_VOICE = "en-us"
DEFAULT_RATE = 175
DEFAULT_PITCH = 50

# Voices (language + optional "+variant") that load from the bundled data and
# give intelligible English; checked by tests/io/test_speech.py.
VOICES: tuple[str, ...] = (
    "en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc",
    "en-us+f2", "en-us+f3", "en-us+f4", "en+f2", "en+f5",
    "en-us+m3", "en+m3", "en+m5", "en-gb-x-rp+m7", "en-gb-x-rp+f3",
)

# espeak_EVENT_TYPE values from speak_lib.h.
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_SENTENCE = 2
EVENT_MARK = 3
EVENT_PLAY = 4
EVENT_END = 5
EVENT_MSG_TERMINATED = 6
EVENT_PHONEME = 7
EVENT_SAMPLERATE = 8

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 1
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3


class _EventId(ctypes.Union):
    """The ``id`` union of espeak_EVENT."""

    _fields_ = [
        ("number", ctypes.c_int),  # WORD / SENTENCE events: word or sentence index.
        ("name", ctypes.c_char_p),  # MARK / PLAY events.
        ("string", ctypes.c_char * 8),  # PHONEME events: mnemonic, NUL-terminated unless 8 bytes.
    ]


class EspeakEvent(ctypes.Structure):
    """speak_lib.h ``espeak_EVENT`` (field order and C types must match exactly)."""

    _fields_ = [
        ("type", ctypes.c_int),  # espeak_EVENT_TYPE (a C enum, int-sized).
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character offset into the text.
        ("length", ctypes.c_int),  # word length in characters (WORD events).
        ("audio_position", ctypes.c_int),  # ms into the synthesised audio.
        ("sample", ctypes.c_int),  # sample index at the native rate (more precise).
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(EspeakEvent)
)


@dataclasses.dataclass(frozen=True)
class Utterance:
    """A synthesised utterance.

    Attributes:
      audio: float32 [N] mono waveform at ``sample_rate`` Hz, in [-1, 1].
      sample_rate: 16000.
      phonemes: (start_s, end_s, mnemonic) in eSpeak's mnemonics (stress marks
        kept, e.g. "'aU"; pauses are "_", "_:"), sorted, contiguous, times in
        seconds from the start of ``audio`` (i.e. after the leading silence).
      words: (start_s, end_s, word) for each spoken word.
      text: the text given to eSpeak.
      voice, rate, pitch: synthesis settings.
    """

    audio: np.ndarray
    sample_rate: int
    phonemes: list[tuple[float, float, str]]
    words: list[tuple[float, float, str]]
    text: str
    voice: str
    rate: int
    pitch: int

    @property
    def duration(self) -> float:
        """Length of ``audio`` in seconds."""
        return len(self.audio) / self.sample_rate


_LOCK = threading.Lock()
_PRIVATE_LIB: str | None = None


def _private_library() -> str:
    """Path of this process's private copy of libespeak-ng.

    eSpeak keeps synthesis state in C statics (e.g. the pitch-flutter phase),
    which Initialize/Terminate do not reset, so an utterance would depend on
    everything synthesised before it. Loading a private copy and unloading it
    after every utterance gives each one a pristine library, making output a
    function of (text, voice, rate, pitch) alone. The copy has a unique name so
    no other dlopen() of the packaged library can keep it loaded.
    """
    global _PRIVATE_LIB
    if _PRIVATE_LIB is None or not os.path.exists(_PRIVATE_LIB):
        import espeakng_loader

        d = tempfile.mkdtemp(prefix="thflax-espeak-")
        dst = os.path.join(d, f"libespeak-ng-thflax-{os.getpid()}.so")
        shutil.copyfile(espeakng_loader.get_library_path(), dst)
        atexit.register(shutil.rmtree, d, True)
        _PRIVATE_LIB = dst
    return _PRIVATE_LIB


def _bind(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_Terminate.argtypes = []


def _run_espeak(text: str, voice: str | None, rate: int, pitch: int):
    """Synthesises with a freshly loaded library (call with ``_LOCK`` held).

    Args:
      voice: voice name, or None to only check that the library initialises.
    Returns:
      (native sample rate, int16 PCM [N], events [(type, text_pos, length,
      sample, payload)]); payload is the mnemonic for phoneme events, else the
      id number.
    Raises:
      ValueError: the voice does not load.
    """
    import _ctypes  # dlclose
    import espeakng_loader

    lib = ctypes.CDLL(_private_library(), mode=ctypes.RTLD_LOCAL)
    handle = lib._handle
    chunks: list[np.ndarray] = []
    events: list[tuple[int, int, int, int, object]] = []

    def on_synth(wav, num_samples, evs) -> int:
        if num_samples > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        i = 0
        while evs[i].type != EVENT_LIST_TERMINATED:
            ev = evs[i]
            if ev.type == EVENT_PHONEME:
                payload: object = ev.id.string.decode("utf-8", "replace")
            else:
                payload = ev.id.number
            events.append((ev.type, ev.text_position, ev.length, ev.sample, payload))
            i += 1
        return 0  # 0 = continue synthesis

    callback = _SynthCallback(on_synth)  # must stay alive until Terminate
    try:
        _bind(lib)
        rate_hz = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(),
            _INITIALIZE_PHONEME_EVENTS,
        )
        if rate_hz <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({rate_hz})")
        try:
            lib.espeak_SetSynthCallback(callback)
            lib.espeak_ng_SetRandSeed(1)
            if voice is None:
                return rate_hz, np.zeros(0, np.int16), []
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak cannot load voice {voice!r}")
            lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            err = lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed ({err})")
        finally:
            lib.espeak_Terminate()
    finally:
        del lib
        _ctypes.dlclose(handle)
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return rate_hz, pcm, events


def voice_loads(voice: str) -> bool:
    """Whether eSpeak accepts ``voice`` with the bundled data.

    (eSpeak ignores an unknown "+variant" suffix, so this checks the language.)
    """
    with _LOCK, signals_deferred():
        try:
            _run_espeak("", voice, DEFAULT_RATE, DEFAULT_PITCH)
        except ValueError:
            return False
    return True


def _is_pause(mnemonic: str) -> bool:
    return mnemonic.startswith("_")


def synthesize(
    text: str,
    voice: str = DEFAULT_VOICE,
    rate: int = DEFAULT_RATE,
    pitch: int = DEFAULT_PITCH,
    *,
    labels: list[str] | None = None,
    leading_silence: float = 0.0,
    trailing_silence: float = 0.0,
) -> Utterance:
    """Synthesises ``text`` with eSpeak NG.

    Args:
      text: text to speak (UTF-8).
      voice: eSpeak voice name, optionally with a variant ("en-us+f3").
      rate: words per minute (eSpeak's 80..450).
      pitch: base pitch 0..100.
      labels: names for the words, one per eSpeak word event, in order (e.g. the
        GRID words when ``text`` spells a letter phonetically). Default: the
        substring of ``text`` each word event points at.
      leading_silence, trailing_silence: seconds of digital silence added before
        and after the speech; all timings are shifted accordingly.

    Returns:
      An Utterance with float32 audio at 16 kHz and phoneme/word timings.
    """
    import librosa  # heavy import; only needed here

    with _LOCK, signals_deferred():
        native, pcm, events = _run_espeak(text, voice, rate, pitch)
    if pcm.size == 0:
        raise RuntimeError(f"eSpeak produced no audio for {text!r} ({voice})")
    speech_dur = pcm.size / native
    audio = librosa.resample(
        pcm.astype(np.float32) / 32768.0, orig_sr=native, target_sr=SAMPLE_RATE
    ).astype(np.float32)
    n_lead = int(round(leading_silence * SAMPLE_RATE))
    n_trail = int(round(trailing_silence * SAMPLE_RATE))
    audio = np.concatenate(
        [np.zeros(n_lead, np.float32), audio, np.zeros(n_trail, np.float32)]
    )
    offset = n_lead / SAMPLE_RATE

    # Phonemes: each lasts until the next one starts; the last until speech ends.
    ph_events = [(s / native, p) for (t, _, _, s, p) in events if t == EVENT_PHONEME]
    phonemes: list[tuple[float, float, str]] = []
    for i, (start, name) in enumerate(ph_events):
        end = ph_events[i + 1][0] if i + 1 < len(ph_events) else speech_dur
        start, end = min(start, speech_dur), min(max(end, start), speech_dur)
        phonemes.append((start + offset, end + offset, str(name)))

    # Words: start at the word event; end at the next word's start or at the
    # first pause phoneme after the word's first phoneme, whichever is earlier.
    wd_events = [(s / native, pos, ln) for (t, pos, ln, s, _) in events if t == EVENT_WORD]
    if labels is not None and len(labels) != len(wd_events):
        raise RuntimeError(
            f"eSpeak gave {len(wd_events)} words for {text!r}, expected {len(labels)}"
        )
    words: list[tuple[float, float, str]] = []
    for i, (start, pos, length) in enumerate(wd_events):
        end = wd_events[i + 1][0] if i + 1 < len(wd_events) else speech_dur
        for p_start, _, name in phonemes:
            p_start -= offset
            if p_start > start and _is_pause(name):
                end = min(end, p_start)
                break
        label = labels[i] if labels is not None else text[pos - 1 : pos - 1 + length]
        words.append((start + offset, max(end, start) + offset, label))

    return Utterance(
        audio=audio, sample_rate=SAMPLE_RATE, phonemes=phonemes, words=words,
        text=text, voice=voice, rate=int(rate), pitch=int(pitch),
    )
