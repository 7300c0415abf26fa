"""Spoken digit strings: log-mel features, the pyramidal listener, attention masking, a tiny
overfit run decoded greedily and with beam search, error rates, resampling, the utterance
builder, the train/eval CLI, bad input to transcribe(), and the committed checkpoint."""
import io
import json
import tarfile
import wave

import numpy as np
import pytest
import scipy.signal
import soundfile
import torch

from core import checkpoints, data
from core.errors import BadInput
from demos import speech as demo
from models.speech import (DIGIT_WORDS, EOS, N_MELS, SAMPLE_RATE, Attention, BiLSTM, ListenAttendSpell, Listener,
                           PyramidalBiLSTM, build_utterance, checkpoint_name, digits_to_text, encode, features,
                           load_clips, load_model, log_mel, mel_centres, mel_filterbank, spec_augment, text,
                           text_to_digits, train_command, trim_silence)
from conftest import run_cli
from train import speech as training

TARGET_WER = 0.08  # the target on the held-out speaker


def tone(freq: float, seconds: float = 1.0, rate: int = SAMPLE_RATE, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---- features -----------------------------------------------------------------------------

def test_log_mel_shape():
    assert log_mel(torch.from_numpy(tone(440, 1.0))).shape == (101, N_MELS)  # 10 ms hop, centred frames
    assert log_mel(torch.zeros(50)).shape == (3, N_MELS)  # shorter than one window still works


@pytest.mark.parametrize("freq", [250.0, 1000.0, 2500.0])
def test_a_pure_tone_lands_in_its_mel_band(freq):
    energy = log_mel(torch.from_numpy(tone(freq))).mean(0)
    assert int(energy.argmax()) == int((mel_centres() - freq).abs().argmin())


def test_filterbank_has_no_empty_band():
    bank = mel_filterbank()
    assert bank.shape == (N_MELS, 129) and (bank.sum(1) > 0).all() and bank.max() <= 1


def test_features_are_normalised_and_ignore_loudness():
    rng = np.random.default_rng(0)
    wave = tone(300) + tone(1700, amplitude=0.2) + rng.normal(0, 0.01, SAMPLE_RATE)
    wave = torch.from_numpy(wave.astype(np.float32))
    feats = features(wave)
    torch.testing.assert_close(feats.mean(0), torch.zeros(N_MELS), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.std(0, correction=0), torch.ones(N_MELS), atol=1e-3, rtol=0)
    torch.testing.assert_close(features(wave * 0.01), feats, atol=1e-3, rtol=0)


def test_spec_augment_masks_only_in_place():
    feats = torch.randn(300, N_MELS)
    masked = spec_augment(feats, torch.Generator().manual_seed(0))
    assert masked.shape == feats.shape
    changed = masked != feats
    assert changed.any() and (masked[changed] == 0).all()


# ---- the model ------------------------------------------------------------------------------

def test_bilstm_matches_torch_packed_bidirectional_lstm():
    torch.manual_seed(0)
    mine, theirs = BiLSTM(6, 5), torch.nn.LSTM(6, 5, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(theirs, f"{name}_l0").copy_(getattr(mine.forward_lstm, f"{name}_l0"))
            getattr(theirs, f"{name}_l0_reverse").copy_(getattr(mine.backward_lstm, f"{name}_l0"))
    x, lengths = torch.randn(3, 9, 6), torch.tensor([9, 4, 7])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(theirs(packed)[0], batch_first=True)
    torch.testing.assert_close(mine(x, lengths), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("steps, lengths, halved", [(8, [8, 5], [4, 3]), (7, [7, 4], [4, 2]), (1, [1, 1], [1, 1])])
def test_pyramidal_layer_halves_time(steps, lengths, halved):
    torch.manual_seed(0)
    layer = PyramidalBiLSTM(4, 3)
    x, lengths = torch.randn(2, steps, 4), torch.tensor(lengths)
    out, new_lengths = layer(x, lengths)
    assert out.shape == (2, (steps + 1) // 2, 6) and new_lengths.tolist() == halved
    # the shorter sequence comes out the same alone as padded in a batch, and its padding is zero
    alone, _ = layer(x[1:, :lengths[1]], lengths[1:])
    torch.testing.assert_close(out[1:, :halved[1]], alone, atol=1e-6, rtol=1e-5)
    assert out[1, halved[1]:].eq(0).all()


def test_listener_reduces_time_by_eight():
    listener = Listener(N_MELS, 8, pyramid_layers=3, dropout=0.0)
    out, lengths = listener(torch.randn(2, 101, N_MELS), torch.tensor([101, 40]))
    assert out.shape == (2, 13, 16) and lengths.tolist() == [13, 5]  # ceil(101/8), ceil(40/8)


def test_attention_gives_padded_frames_zero_weight():
    torch.manual_seed(0)
    attention = Attention(listener_dim=6, query_dim=4, dim=5)
    keys, values = attention.project(torch.randn(2, 7, 6))
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    context, weights = attention(torch.randn(2, 4), keys, values, mask)
    assert weights.shape == (2, 7) and context.shape == (2, 5)
    assert weights[1, 4:].eq(0).all() and (weights[1, :4] > 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(2))
    scrambled = values.clone()
    scrambled[1, 4:] = 1e6  # whatever sits in the padding never reaches the context
    torch.testing.assert_close(attention(torch.zeros(2, 4), keys, scrambled, mask)[0][1],
                               attention(torch.zeros(2, 4), keys, values, mask)[0][1])


def test_characters_round_trip():
    assert digits_to_text([4, 1, 9]) == "four one nine"
    assert text_to_digits("four one nine") == "419" and text_to_digits("for one") == "?1" and text_to_digits("") == ""
    assert encode("one")[-1] == EOS and text(encode("seven zero")) == "seven zero"


def test_beam_of_one_is_greedy():
    torch.manual_seed(0)
    model = ListenAttendSpell(listener_hidden=16, speller_hidden=32, speller_layers=1, attention_dim=16).eval()
    feats, lengths = torch.randn(3, 60, N_MELS), torch.tensor([60, 33, 47])
    greedy, greedy_weights = model.greedy(feats, lengths, max_len=12)
    beam, beam_weights = model.beam_search(feats, lengths, beam=1, max_len=12)
    assert greedy == beam
    for g, b in zip(greedy_weights, beam_weights):
        torch.testing.assert_close(g, b)


def synthetic_clips():
    """A 'word' per digit: a 0.15 s tone at its own pitch, so the model has something to learn."""
    return [[tone(300 + 320 * d, 0.15)] for d in range(10)]


def test_tiny_overfit_then_decode_greedy_and_beam():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    strings = [[4, 1, 9], [7], [0, 2, 2]]
    waves = [build_utterance(synthetic_clips(), d, rng) for d in strings]
    refs = [digits_to_text(d) for d in strings]
    feats, lengths = training.batch_features(waves)
    targets = training.batch_targets(refs)
    model = ListenAttendSpell(listener_hidden=24, pyramid_layers=3, embed_dim=16, speller_hidden=48, speller_layers=1,
                              attention_dim=24, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(150):
        logits, _, digit_log_probs, listened = model(feats, lengths, targets)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), targets.reshape(-1),
                                                 ignore_index=0) + 0.3 * training.digit_ctc_loss(digit_log_probs,
                                                                                                listened, strings)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.02:
            break
    model.eval()
    greedy, alignments = model.greedy(feats, lengths)
    assert [text(h) for h in greedy] == refs
    assert [text(h) for h in model.beam_search(feats, lengths, beam=3)[0]] == refs
    assert alignments[0].shape == (len(refs[0]) + 1, (int(lengths[0]) + 7) // 8)  # characters + <eos> x frames


def test_error_rates():
    rates = training.error_rates(["one two three", "four"], ["one too three", ""])
    assert rates["wer"] == pytest.approx(2 / 4)  # one substitution, one deletion, four words
    assert rates["cer"] == pytest.approx(5 / 17)  # "w"->"o" and "four" gone, spaces count
    assert training.error_rates(["five"], ["five"]) == {"wer": 0.0, "cer": 0.0}
    assert training.error_rates(["one"], ["one one"])["wer"] == 1.0  # insertions count too


# ---- data -------------------------------------------------------------------------------------

def test_trim_silence_keeps_the_word_and_a_margin():
    word = tone(500, 0.3)
    padded = np.concatenate([np.zeros(4000, np.float32), word, np.zeros(4000, np.float32)])
    trimmed = trim_silence(padded, margin=0.02)
    assert abs(len(trimmed) - (len(word) + 2 * 160)) <= 160


def test_utterance_builder_joins_the_digits_in_order():
    clips = [[np.full(400 + 40 * d, (d + 1) / 20, np.float32)] for d in range(10)]
    rng = np.random.default_rng(1)
    wave = build_utterance(clips, [3, 1, 4, 1], rng)
    voiced = wave != 0
    starts = np.flatnonzero(voiced & ~np.r_[False, voiced[:-1]])
    heard = [int(round(wave[s] * 20)) - 1 for s in starts]
    assert heard == [3, 1, 4, 1]
    assert all(np.all(wave[s:s + 400 + 40 * d] == (d + 1) / 20) for s, d in zip(starts, heard))
    augmented = build_utterance(clips, [3, 1, 4, 1], rng, augment=True)
    assert augmented.dtype == np.float32 and np.abs(augmented).max() <= 1
    assert digits_to_text([3, 1, 4, 1]) == "three one four one"


def test_fixed_sets_are_fixed():
    a = training.fixed_set(synthetic_clips(), 20, seed=5)
    b = training.fixed_set(synthetic_clips(), 20, seed=5)
    assert a.refs == b.refs and all(np.array_equal(x, y) for x, y in zip(a.waves, b.waves))
    assert {len(r.split()) for r in a.refs} <= set(range(1, 8))


needs_mirror = pytest.mark.skipif(data.mirror_dir() is None, reason="needs the FSDD mirror ($DLP_DATA_MIRROR)")


@needs_mirror
def test_speakers_are_split_as_documented():
    clips = load_clips()
    assert [len(c) for c in clips["train"]] == [225] * 10  # five speakers, takes 5-49
    assert [len(c) for c in clips["val"]] == [25] * 10  # five speakers, takes 0-4
    assert [len(c) for c in clips["test"]] == [50] * 10 and len(clips["test_raw"]) == 500  # theo, all of him
    (string_waves, refs), (single_waves, words) = training.held_out_sets(clips)
    assert len(refs) == 1000 and len(words) == 500 and words[0] == "zero"


def test_fsdd_download_reads_the_release_tarball(tmp_path, monkeypatch):
    """The download path, fed a tarball laid out like the GitHub release (a file:// URL)."""
    tarball = tmp_path / "fsdd.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for speaker in data.FSDD_SPEAKERS:
            for digit in range(10):
                for take in range(50):
                    buffer = io.BytesIO()
                    with wave.open(buffer, "wb") as w:
                        w.setnchannels(1)
                        w.setsampwidth(2)
                        w.setframerate(8000)
                        w.writeframes(np.full(20, digit, np.int16).tobytes())
                    info = tarfile.TarInfo(f"free-spoken-digit-dataset-1.0.10/recordings/{digit}_{speaker}_{take}.wav")
                    info.size = buffer.getbuffer().nbytes
                    buffer.seek(0)
                    tar.addfile(info, buffer)
    monkeypatch.delenv("DLP_DATA_MIRROR", raising=False)
    monkeypatch.setattr(data, "FSDD_URL", tarball.as_uri())
    waves, digits, speakers, takes = data.fsdd(root=tmp_path / "data")
    assert len(waves) == 3000 and set(speakers) == set(data.FSDD_SPEAKERS)
    assert all(int(w[0]) == d for w, d in zip(waves, digits)) and sorted(set(takes.tolist())) == list(range(50))
    with pytest.raises(FileNotFoundError):
        data.fsdd(root=tmp_path / "elsewhere", download=False)


# ---- the CLI ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_train_then_eval_tiny(tmp_path):
    trained = run_cli("train.speech", "--epochs", "1", "--limit", "16", "--checkpoint-dir", str(tmp_path))
    folder = tmp_path / "speech"
    assert {"model.safetensors", "config.json", "metrics.json"} <= {p.name for p in folder.iterdir()}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_speaker"] == "theo" and metrics["test_strings"] == 16 and metrics["test_singles"] == 16
    assert {"train_loss", "train_digit_ctc", "val_wer", "val_cer", "lr", "teacher_forcing", "most_digits",
            "wall_time_s"} <= set(metrics["history"][0])
    evaluated = run_cli("train.speech", "--eval", "--limit", "16", "--checkpoint-dir", str(tmp_path))
    for key in ("test_wer_greedy", "test_cer_greedy", "test_wer_beam", "test_cer_beam", "single_digit_error_beam"):
        assert evaluated[key] == trained[key], key


def test_schedules():
    rates = [training.teacher_forcing(e, 25, 0.8) for e in range(1, 26)]
    assert rates[:5] == [1.0] * 5 and rates[-1] == pytest.approx(0.8)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert [training.most_digits(e) for e in range(1, 9)] == [2, 3, 4, 5, 6, 7, 7, 7]


def test_digit_ctc_loss_accepts_noise_with_no_digits():
    log_probs = torch.randn(6, 3, 11).log_softmax(2)
    loss = training.digit_ctc_loss(log_probs, torch.tensor([6, 6, 4]), [[4, 1], [], [7]])
    assert loss.ndim == 0 and torch.isfinite(loss)


# ---- the tab's functions ------------------------------------------------------------------------

def test_resampling_48k_stereo_to_8k_mono():
    left = tone(440, 1.0, rate=48000)
    stereo = np.stack([left, left], axis=1)  # (n, 2) as gr.Audio gives
    wave = demo.read_audio((48000, np.round(stereo * 32767).astype(np.int16)))
    assert wave.dtype == np.float32 and wave.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(wave) - 440) < 2


def test_reads_files_of_any_rate_and_channels(tmp_path):
    path = tmp_path / "stereo.flac"
    soundfile.write(path, np.stack([tone(300, 0.5, 44100), tone(300, 0.5, 44100)], axis=1), 44100)
    assert demo.read_audio(str(path)).shape == (4000,)
    assert demo.read_audio((16000, tone(300, 0.5, 16000))).shape == (4000,)  # float mono
    assert demo.read_audio((8000, np.zeros((2, 4000), np.int16))).shape == (4000,)  # (channels, n) too


def test_bad_input_is_a_clear_message(tmp_path):
    with pytest.raises(BadInput, match="No audio"):
        demo.transcribe(None)
    with pytest.raises(BadInput, match="empty"):
        demo.transcribe((8000, np.zeros(0, np.int16)))
    with pytest.raises(BadInput, match="limit"):
        demo.transcribe((8000, np.zeros(8000 * 25, np.int16)))
    long_file = tmp_path / "long.wav"
    soundfile.write(long_file, np.zeros(8000 * 700, np.int16), 8000)  # about 12 minutes
    with pytest.raises(BadInput, match="limit"):
        demo.transcribe(str(long_file))
    notes = tmp_path / "notes.wav"
    notes.write_text("this is not audio")
    with pytest.raises(BadInput, match="Could not read"):
        demo.transcribe(str(notes))
    with pytest.raises(BadInput, match="Could not read"):
        demo.transcribe(str(tmp_path / "missing.wav"))


def test_silence_and_steady_noise_are_an_empty_transcript():
    assert demo.transcribe((8000, np.zeros(24000, np.int16))) == ""
    assert demo.transcribe((44100, np.zeros((44100, 2), np.float32))) == ""
    noise = np.random.default_rng(0).normal(0, 0.1, 48000 * 2).astype(np.float32)
    assert demo.transcribe((48000, noise)) == ""
    assert "noise" in demo.no_speech(demo.resample(noise, 48000))
    assert demo.no_speech(tone(500, 0.1) * np.hanning(800).astype(np.float32)) == ""  # a short burst may be speech
    assert "too short" in demo.no_speech(tone(500, 0.05)) and demo.transcribe((8000, tone(500, 0.05))) == ""


def wav_claiming(path, rate: int, samples: np.ndarray, true_rate: int = SAMPLE_RATE):
    """A valid 16-bit mono WAV whose header then claims `rate` (the sample-rate and byte-rate
    fields patched, as a damaged or hostile file would)."""
    soundfile.write(path, samples, true_rate, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    assert raw[12:16] == b"fmt " and int.from_bytes(raw[24:28], "little") == true_rate
    raw[24:28] = rate.to_bytes(4, "little")
    raw[28:32] = (2 * rate).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("rate", [4_000_037, 2 ** 31 - 1, 1_000])
def test_a_lying_sample_rate_is_refused_before_decoding(tmp_path, rate):
    import time
    import tracemalloc
    path = wav_claiming(tmp_path / "liar.wav", rate, tone(440, 1.0))  # 16 KB
    assert soundfile.info(str(path)).samplerate == rate
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(BadInput, match=f"'Digits, spoken'.*sample rate is {rate:,} Hz"):
        demo.analyse(str(path))
    seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 1 and peak < 2_000_000, (seconds, peak)  # the seed: 19 s and +3.7 GB at 4,000,037 Hz


def test_an_odd_but_possible_rate_costs_little(tmp_path):
    import tracemalloc
    path = wav_claiming(tmp_path / "odd.wav", 191_999, tone(1000, 1.0, 191_999), true_rate=191_999)
    tracemalloc.start()
    wave = demo.read_audio(str(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10_000_000, peak  # the exact ratio 8000/191999 built a 184 MB filter
    assert abs(len(wave) - SAMPLE_RATE) <= 1
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(wave) - 1000) < 2  # the pitch is kept


def test_resampling_keeps_common_rates_exact():
    for rate in (11025, 16000, 22050, 44100, 48000, 96000, 192000):
        assert len(demo.resample(np.zeros(rate, np.float32), rate)) == SAMPLE_RATE


def test_a_long_file_is_refused_from_its_header(tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(path, np.zeros(4000 * 30, np.int16), 4000)  # 30 s
    with pytest.raises(BadInput, match="'Digits, spoken': that recording is 30 s long; the limit is 20 s"):
        demo.read_audio(str(path))
    many = tmp_path / "many.wav"
    soundfile.write(many, np.zeros((800, 12), np.float32), 8000)
    with pytest.raises(BadInput, match="12 channels"):
        demo.read_audio(str(many))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_samples_are_refused(tmp_path, bad):
    samples = tone(300, 1.0)
    samples[100:110] = bad
    path = tmp_path / "broken.wav"
    soundfile.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(BadInput, match=r"'Digits, spoken': 10 of its samples are not numbers \(NaN or infinity\)"):
        demo.analyse(str(path))
    with pytest.raises(BadInput, match="not numbers"):
        demo.transcribe((SAMPLE_RATE, samples))  # the same samples as an array


def test_absurd_float_samples_are_refused_and_loud_ones_scaled(tmp_path):
    path = tmp_path / "huge.wav"
    soundfile.write(path, tone(300, 1.0) * np.float32(1e30), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(BadInput, match="'Digits, spoken': its samples reach 5e\\+29.*not sound"):
        demo.analyse(str(path))
    loud = tmp_path / "loud.wav"
    soundfile.write(loud, tone(300, 1.0, amplitude=4.0), SAMPLE_RATE, subtype="FLOAT")
    wave = demo.read_audio(str(loud))
    assert abs(np.abs(wave).max() - 1.0) < 1e-3  # scaled to full scale, not clipped into a square wave
    np.testing.assert_allclose(wave, tone(300, 1.0) * 2, atol=1e-3)


def test_silent_files_get_a_clear_answer(tmp_path):
    for subtype in ("PCM_16", "FLOAT"):
        path = tmp_path / f"silence-{subtype}.wav"
        soundfile.write(path, np.zeros(SAMPLE_RATE * 2, np.float32), SAMPLE_RATE, subtype=subtype)
        transcript, digits, spectrogram, alignment, note = demo.analyse(str(path))
        assert (transcript, digits, alignment, note) == ("", "", None, "Only silence: nothing to transcribe.")
        assert spectrogram is not None


@pytest.mark.app
def test_the_app_names_the_problem_of_a_lying_or_broken_wav(app_url, tmp_path):
    """Through the real upload path: the message reaches the client, not a bare "Error"."""
    from gradio_client import Client, handle_file
    client = Client(app_url, verbose=False)
    liar = wav_claiming(tmp_path / "liar.wav", 2 ** 31 - 1, tone(440, 1.0))  # the seed: MemoryError, "Error"
    with pytest.raises(Exception, match="sample rate is 2,147,483,647 Hz"):
        client.predict(handle_file(str(liar)), api_name="/speech_transcribe")
    samples = tone(300, 1.0)
    samples[::7] = np.nan
    broken = tmp_path / "nan.wav"
    soundfile.write(broken, samples, SAMPLE_RATE, subtype="FLOAT")  # the seed: "rrrr"
    with pytest.raises(Exception, match="not numbers"):
        client.predict(handle_file(str(broken)), api_name="/speech_transcribe")


def test_checkpoint_name_and_train_command(tmp_path):
    assert checkpoint_name() == "speech" and train_command() == "python -m train.speech"
    with pytest.raises(checkpoints.MissingCheckpoint, match="python -m train.speech"):
        load_model(root=tmp_path)


def test_missing_checkpoint_tells_which_command_to_run(monkeypatch):
    def missing():
        raise checkpoints.MissingCheckpoint(checkpoint_name(), train_command())

    monkeypatch.setattr(demo, "load_model", missing)
    burst = np.concatenate([np.zeros(800), tone(400, 0.3), np.zeros(800)]).astype(np.float32)
    transcript, digits, spectrogram, alignment, note = demo.analyse((8000, burst))
    assert transcript == "" and spectrogram is not None and "python -m train.speech" in note
    card = demo.model_card()
    assert ("Tested on **theo**" in card) if committed else ("python -m train.speech" in card)


@needs_mirror
def test_random_example_is_the_held_out_speaker():
    (rate, samples), words = demo.random_example(seed=3)
    assert rate == SAMPLE_RATE and samples.dtype == np.int16 and 1 <= len(words.split()) <= 7
    assert set(words.split()) <= set(DIGIT_WORDS)


# ---- the committed checkpoint -------------------------------------------------------------------

committed = checkpoints.find(checkpoint_name()) is not None


@pytest.mark.slow
@pytest.mark.skipif(not committed, reason="no committed speech checkpoint yet")
def test_committed_checkpoint_meets_target():
    result = run_cli("train.speech", "--eval")
    assert result["test_strings"] == 1000 and result["test_singles"] == 500
    assert min(result["test_wer_greedy"], result["test_wer_beam"]) <= TARGET_WER, result


@pytest.mark.skipif(not committed, reason="no committed speech checkpoint yet")
@needs_mirror
def test_committed_model_reads_validation_strings_and_odd_formats(tmp_path):
    clips = load_clips()["val"]
    rng = np.random.default_rng(7)
    wave = build_utterance(clips, [4, 1, 9], rng)
    assert demo.transcribe((SAMPLE_RATE, wave)) == "four one nine"
    stereo_48k = np.stack([scipy.signal.resample_poly(wave, 6, 1)] * 2, axis=1)
    path = tmp_path / "digits.flac"
    soundfile.write(path, stereo_48k, 48000)
    assert demo.transcribe(str(path)) == "four one nine"
    transcript, digits, spectrogram, alignment, note = demo.analyse((SAMPLE_RATE, wave))
    assert digits == "419" and alignment is not None
