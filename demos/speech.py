"""Spoken digit strings: record or upload someone saying digits ("four one nine") and
Listen, Attend and Spell spells out what it hears, character by character. Shows the
log-mel spectrogram it read and where it listened while writing each character.

Any sample rate and channel count is accepted (mixed to mono, resampled to 8 kHz); files
are read with soundfile (WAV, FLAC, OGG, MP3 and the rest of libsndfile's formats).
"""
import functools
import math
from fractions import Fraction
from pathlib import Path

import gradio as gr
import matplotlib.figure
import numpy as np
import scipy.signal
import soundfile
import torch

from core import checkpoints
from core.errors import BadInput
from core.plots import curves_image
from core.results import Entry, Figure
from core.ui import user_errors
import models.speech
from models.speech import (EOS, HOP_LENGTH, MAX_DIGITS, SAMPLE_RATE, TEST_SPEAKER, VOCAB, build_utterance,
                           checkpoint_name, digits_to_text, features, load_clips, log_mel, random_digits, text,
                           text_to_digits, train_command)

TITLE = "Spoken digits (Listen, Attend and Spell)"
MAX_SECONDS = 20.0  # longer audio is refused; the model was trained on strings of up to 7 digits (about 5 s)
SILENCE_DBFS = -60.0  # loudest 25 ms below this: nothing was said
STEADY_DB = 3.0  # loudest and quietest frames this close: steady noise (white noise is 1-2 dB, speech 4 or more)
BEAM = 4
REDUCTION = 8  # listener frames are 8 feature frames (80 ms)
AUDIO_LABEL = "Digits, spoken"  # the input's label, named in its messages
MIN_RATE, MAX_RATE = 4_000, 192_000  # sample rates read (telephone to studio)
MAX_CHANNELS = 8
MAX_PEAK = 1_000.0  # float samples lie in [-1, 1]; a little over is scaled down, far over is not sound


@functools.cache
def load_model():
    """The committed model, read once (the tests and the latency benchmark replace this)."""
    return models.speech.load_model()


def to_float(data) -> np.ndarray:
    """Samples of any numeric dtype -> float32 in [-1, 1] (int16 as gr.Audio gives, int32,
    uint8, or floats). Floats must be finite; a float recording louder than full scale is
    scaled down to it (clipping would distort it), and one far beyond is refused."""
    data = np.asarray(data)
    if data.size == 0:
        raise BadInput("The recording is empty.")
    if data.dtype.kind == "i":
        return data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    if data.dtype.kind == "u":
        half = 2 ** (8 * data.dtype.itemsize - 1)
        return (data.astype(np.float32) - half) / half
    if data.dtype.kind == "f":
        data = data.astype(np.float32)
        broken = data.size - int(np.isfinite(data).sum())
        if broken:
            raise BadInput(f"{AUDIO_LABEL!r}: {broken:,} of its samples are not numbers (NaN or infinity), so the "
                           "file is damaged. Please record or export it again.")
        peak = float(np.abs(data).max())
        if peak > MAX_PEAK:
            raise BadInput(f"{AUDIO_LABEL!r}: its samples reach {peak:.3g}, but a float recording's samples lie "
                           "between -1 and 1: this is not sound. Please record or export it again.")
        return data / peak if peak > 1 else data
    raise BadInput(f"Expected audio samples, got an array of {data.dtype}.")


def check_rate(rate: int) -> None:
    """Refuse sample rates no recording has: resampling from them is what costs (the seed
    spent 19 s and 3.7 GB on a 16 KB file whose header claimed 4,000,037 Hz)."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BadInput(f"{AUDIO_LABEL!r}: the file says its sample rate is {rate:,} Hz; recordings this app reads "
                       f"are {MIN_RATE:,} to {MAX_RATE:,} Hz, so the file is damaged or not a recording.")


def check_length(frames: int, rate: int, channels: int = 1) -> None:
    if channels > MAX_CHANNELS:
        raise BadInput(f"{AUDIO_LABEL!r}: the file has {channels:,} channels; up to {MAX_CHANNELS} are read "
                       "(mono or stereo is all the digits need).")
    if frames == 0:
        raise BadInput("The recording is empty.")
    if frames / rate > MAX_SECONDS:
        raise BadInput(f"{AUDIO_LABEL!r}: that recording is {frames / rate:.0f} s long; the limit is "
                       f"{MAX_SECONDS:.0f} s. Please cut out the digits you want read.")


def read_audio(audio) -> np.ndarray:
    """What gr.Audio gives ((sample rate, samples (n,) or (n, channels)) or a file path) ->
    float32 mono at 8 kHz. Raises BadInput for nothing, unreadable, damaged or over-long
    audio. A file's header (rate, channels, length) is checked before its samples are
    decoded, so what a request costs is bounded by the limits, not by what the header claims."""
    if audio is None:
        raise BadInput("No audio yet: record with the microphone, upload a file or press Random example.")
    if isinstance(audio, (str, Path)):
        try:
            info = soundfile.info(str(audio))
        except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError) as e:
            raise BadInput(f"Could not read that file as audio ({e}). Try WAV, FLAC, OGG or MP3.") from e
        rate = int(info.samplerate)
        check_rate(rate)
        check_length(info.frames, rate, info.channels)
        try:  # at most the frames the limit allows, whatever the header says
            data, _ = soundfile.read(str(audio), frames=int(MAX_SECONDS * rate) + 1, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError) as e:
            raise BadInput(f"Could not read that file as audio ({e}). Try WAV, FLAC, OGG or MP3.") from e
    else:
        try:
            rate, data = audio
            rate = int(rate)
        except (TypeError, ValueError, OverflowError) as e:
            raise BadInput("Expected (sample rate, samples) or a file path.") from e
        data = np.asarray(data)
        check_rate(rate)
    if data.ndim == 2 and data.shape[1] > data.shape[0]:
        data = data.T  # (channels, n) -> (n, channels)
    if data.ndim not in (1, 2) or data.size == 0:
        raise BadInput("The recording is empty." if data.size == 0 else
                       f"Expected mono or multi-channel audio, got shape {np.shape(data)}.")
    check_length(len(data), rate, data.shape[1] if data.ndim == 2 else 1)
    data = to_float(data)
    if data.ndim == 2:
        data = data.mean(axis=1)
    return resample(data, rate)


def resample(wave: np.ndarray, rate: int) -> np.ndarray:
    """To 8 kHz with a polyphase filter (anti-aliased), e.g. 48 kHz: up 1, down 6. The ratio
    is the nearest fraction with a denominator up to 1000 (exact for every common rate;
    within 0.03% otherwise): the filter's length grows with the ratio's terms, and an exact
    ratio for 191,999 Hz (8000/191999) cost 184 MB and 2 s for one second of sound."""
    if rate == SAMPLE_RATE:
        return wave.astype(np.float32)
    ratio = Fraction(SAMPLE_RATE, rate).limit_denominator(1000)
    return scipy.signal.resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)


def no_speech(wave: np.ndarray) -> str:
    """Why there is nothing to transcribe ("" if there may be speech): silence, or noise so
    steady that no frame stands out (speech always rises and falls)."""
    if len(wave) < SAMPLE_RATE // 10:
        return "The recording is shorter than 0.1 s: too short to hold a digit."
    frames = np.lib.stride_tricks.sliding_window_view(wave, 200)[::80]  # (n, 200): 25 ms every 10 ms
    energy = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    if energy.max() < SILENCE_DBFS:
        return "Only silence: nothing to transcribe."
    if energy.max() - np.percentile(energy, 10) < STEADY_DB:
        return "This sounds like steady noise, not speech: nothing to transcribe."
    return ""


def recognise(wave: np.ndarray, beam: int = BEAM):
    """(transcript, attention weights (steps, listener frames), character ids) for an 8 kHz wave."""
    model = load_model()
    feats = features(torch.from_numpy(wave), model.n_mels)[None]  # (1, T, n_mels)
    lengths = torch.tensor([feats.shape[1]])
    max_len = 12 + int(15 * len(wave) / SAMPLE_RATE)  # about 12 characters a second, with room to spare
    with torch.inference_mode():
        hyps, weights = (model.beam_search(feats, lengths, beam, max_len) if beam > 1
                         else model.greedy(feats, lengths, max_len))
    return text(hyps[0]), weights[0].numpy(), hyps[0]


def transcribe(audio) -> str:
    """The spoken digits as words ("four one nine"); "" when there is only silence or noise."""
    wave = read_audio(audio)
    if no_speech(wave):
        return ""
    return recognise(wave)[0]


# ---- the tab ----------------------------------------------------------------------------------

def spectrogram_figure(wave: np.ndarray) -> matplotlib.figure.Figure:
    mel = log_mel(torch.from_numpy(wave)).numpy().T * (10 / math.log(10))  # (n_mels, T) in dB
    fig = matplotlib.figure.Figure(figsize=(7, 2.4))
    ax = fig.subplots()
    ax.imshow(mel, origin="lower", aspect="auto", cmap="Purples",
              extent=(0, mel.shape[1] * HOP_LENGTH / SAMPLE_RATE, 0, mel.shape[0]))
    ax.set_xlabel("seconds")
    ax.set_ylabel("mel band")
    ax.set_title("Log-mel spectrogram (what the listener reads)")
    fig.tight_layout()
    return fig


def alignment_figure(weights: np.ndarray, ids: list[int]) -> matplotlib.figure.Figure:
    """Attention weights: one row per character written (and <eos>), one column per listener
    frame (80 ms)."""
    labels = ([VOCAB[i] if VOCAB[i] != " " else "␣" for i in ids] + [VOCAB[EOS]])[:len(weights)]
    fig = matplotlib.figure.Figure(figsize=(7, max(2.4, 0.16 * len(labels) + 1)))
    ax = fig.subplots()
    ax.imshow(weights, aspect="auto", cmap="Blues", interpolation="nearest",
              extent=(0, weights.shape[1] * REDUCTION * HOP_LENGTH / SAMPLE_RATE, len(labels) - 0.5, -0.5))
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("seconds (listener frames of 80 ms)")
    ax.set_ylabel("character written")
    ax.set_title("Where the speller listened for each character")
    fig.tight_layout()
    return fig


def analyse(audio):
    """The tab's action: transcript, digits, spectrogram, alignment, a note."""
    wave = read_audio(audio)
    spectrogram = spectrogram_figure(wave)
    reason = no_speech(wave)
    if reason:
        return "", "", spectrogram, None, reason
    try:
        transcript, weights, ids = recognise(wave)
    except checkpoints.MissingCheckpoint as e:
        return "", "", spectrogram, None, str(e)
    note = "" if transcript else "No digits heard."
    if len(wave) / SAMPLE_RATE > 8:
        note += (" The model was trained on strings of up to 7 digits (about 5 s): longer ones tend to lose or "
                 "repeat digits.")
    return transcript, text_to_digits(transcript), spectrogram, alignment_figure(weights, ids), note.strip()


@functools.cache
def held_out_clips():
    try:
        return load_clips(download=False)["test"]
    except FileNotFoundError as e:
        raise BadInput("Random examples need the FSDD recordings: set DLP_DATA_MIRROR to the data mirror, or run "
                       f"`{train_command()}` once (it downloads them).") from e


def random_example(seed: int | None = None):
    """A string of 1-7 digits said by the held-out speaker (whom the model never heard):
    ((8000, int16 samples), its digits in words)."""
    rng = np.random.default_rng(seed)
    digits = random_digits(rng)
    wave = build_utterance(held_out_clips(), digits, rng)
    return (SAMPLE_RATE, np.round(wave * 32767).astype(np.int16)), digits_to_text(digits)


def model_card() -> str:
    m = checkpoints.load_metrics(checkpoint_name())
    if not m:
        return f"Not trained yet: run `{train_command()}`."
    return (f"Tested on **{m['test_speaker']}**, a speaker never heard in training: word error rate "
            f"**{m['test_wer_beam']:.1%}** (greedy {m['test_wer_greedy']:.1%}), character error rate "
            f"{m['test_cer_beam']:.1%}, on {m['test_strings']:,} strings of 1-{MAX_DIGITS} digits; "
            f"{m['single_digit_error_beam']:.1%} of his {m['test_singles']} single digits wrong. "
            f"{m['parameters']:,} parameters, trained in {m['train_wall_time_s'] / 60:.0f} min on {m['device']} "
            f"(epoch {m['best_epoch']} kept on validation). Reproduce: `{m['command']}`")


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry(TITLE, 8, train_command(),
                 [Figure("word error rate", checkpoint_name(), "test_wer_beam", "{:.1%}"),
                  Figure("character error rate", checkpoint_name(), "test_cer_beam", "{:.1%}")],
                 ["character edit distance computed, never reported (target: WER 8%)"],
                 "a speaker held out of training")


def thumbnail():
    """The Overview's picture of this experiment."""
    return curves_image({"WER": checkpoints.history(checkpoint_name(), "val_wer"),
                         "CER": checkpoints.history(checkpoint_name(), "val_cer")},
                        "epoch", "validation error rate", percent=True)


def build():
    gr.Markdown("Say a few digits in English (\"four one nine\"), or upload a recording, and a Listen, Attend "
                "and Spell model trained here spells out what it hears, one character at a time. It learnt "
                "from five speakers of the Free Spoken Digit Dataset; **Random example** plays strings by "
                f"{TEST_SPEAKER}, the speaker it never heard. Up to {MAX_SECONDS:.0f} s; it was trained on "
                f"strings of 1 to {MAX_DIGITS} digits.")
    with gr.Row():
        with gr.Column(scale=2):
            audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label=AUDIO_LABEL,
                             elem_id="speech-audio")
            with gr.Row():
                go = gr.Button("Transcribe", variant="primary")
                example = gr.Button("Random example")
            reference = gr.Markdown(elem_id="speech-reference")
            transcript = gr.Textbox(label="Transcript", interactive=False, elem_id="speech-transcript")
            digits = gr.Textbox(label="Digits", interactive=False, elem_id="speech-digits")
            note = gr.Markdown(elem_id="speech-note")
        with gr.Column(scale=3):
            spectrogram = gr.Plot(label="Log-mel spectrogram")
            alignment = gr.Plot(label="Attention alignment")
    with gr.Accordion("Model card", open=False):
        gr.Markdown(model_card())

    outputs = [transcript, digits, spectrogram, alignment, note]
    gr.on([go.click, audio.stop_recording, audio.upload], user_errors(analyse), inputs=audio, outputs=outputs,
          api_name="speech_transcribe", trigger_mode="always_last")

    def show_example():
        sound, words = random_example()
        return sound, f"Said: **{words}**"

    gr.on([audio.upload, audio.stop_recording], lambda: "", outputs=reference, api_name="speech_clear_reference",
          api_visibility="private")
    example.click(user_errors(show_example), outputs=[audio, reference], api_name="speech_random_example").then(
        user_errors(analyse), inputs=audio, outputs=outputs, api_name="speech_random_example_transcribe")
