"""Codecs: what a set stores and how it decodes, at the bytes of plain images."""

from __future__ import annotations

import pytest
import torch

from ddkit.data.codecs import LABEL_BYTES, image_bytes, make_codec
from ddkit.data.codecs.fred import dct_matrix
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.methods import create_method
from ddkit.testing import check_method, method_test_overrides, tiny_digits


def test_dct_is_orthonormal_and_fred_keeping_everything_is_lossless():
    d = dct_matrix(8, torch.float64)
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    train = tiny_digits().train
    codec = make_codec("fred:1")
    codec.fit(train)
    x = train.images[:12]
    assert torch.allclose(codec.decode(codec.encode(x, torch.Generator())), x, atol=1e-5)


def test_fred_keeps_the_positions_where_real_data_has_most_energy():
    train = tiny_digits().train
    codec = make_codec("fred:0.25")
    codec.fit(train)
    x = train.images[:20]
    kept = codec.decode(codec.encode(x, torch.Generator()))
    coefficients = codec._forward(kept).flatten(2)
    dropped = torch.ones(64, dtype=torch.bool)
    dropped[codec.index_[0]] = False
    assert coefficients[:, 0, dropped].abs().max() < 1e-5  # nothing outside the kept positions
    lowpass_error = (kept - x).pow(2).mean()
    assert lowpass_error < 0.5 * x.pow(2).mean()  # a quarter of the coefficients keeps most


@pytest.mark.parametrize("spec", ["pixels", "formation:2", "fred:0.25", "fred:0.5", "haba:3"])
@pytest.mark.parametrize("ipc", [2, 10])
def test_every_codec_fits_the_bytes_of_plain_images(spec, ipc):
    train = tiny_digits().train
    codec = make_codec(spec)
    codec.fit(train)
    n = codec.real_per_class(ipc, train.spec)
    index = train.sample_per_class(min(n, 20), torch.Generator().manual_seed(0))
    start = train.images[index.repeat(1, -(-n // index.shape[1]))[:, :n].flatten()]
    stored = codec.encode(start, torch.Generator().manual_seed(0))
    syn = SyntheticSet.from_codec(codec, stored, train.spec)
    k = train.spec.num_classes
    plain = ipc * k * (image_bytes(train.spec) + LABEL_BYTES)
    per_class = codec.emitted_per_class(ipc, train.spec)
    assert len(syn) == k * per_class and per_class >= ipc
    stored = syn.storage_bytes()["total"]
    if spec.startswith("fred"):
        assert stored <= plain < stored + k * (4 * round(float(spec[5:]) * 64) + LABEL_BYTES)
    elif spec == "pixels":
        assert stored == plain
    elif spec.startswith("haba"):  # one more base per class would not fit
        assert stored <= plain < stored + k * (image_bytes(train.spec) + 3 * LABEL_BYTES)
    else:  # formation stores the plain images; its labels are those of the decoded images
        assert syn.storage_bytes()["images"] == ipc * k * image_bytes(train.spec)


@pytest.mark.parametrize("method", ["dm", "dc", "dsa"])
@pytest.mark.parametrize("spec", ["formation:2", "fred:0.25", "haba:3"])
def test_matching_through_a_codec_is_a_conforming_method(method, spec):
    check_method(method, overrides={"codec": spec})


def _cheap(method, **options):
    """``method`` at its test-sized settings, with ``options``."""
    return create_method(method, **{**method_test_overrides(method), **options})


@pytest.mark.parametrize("method", ["mtt", "tesla", "datm", "bptt", "kip", "frepo"])
@pytest.mark.parametrize("spec", ["formation:2", "fred:0.25"])
def test_trajectory_and_performance_methods_through_a_codec_conform(method, spec):
    check_method(method, overrides={"codec": spec})


@pytest.mark.parametrize("method", ["tesla", "datm", "kip"])
def test_learned_and_soft_labels_are_one_per_decoded_image_and_counted(method):
    train = tiny_digits().train
    extra = {"learn_labels": True} if method == "kip" else {}
    m = _cheap(method, codec="formation:2", **extra)
    syn = m.fit(train, 1, iterations=1, seed=0)
    assert len(syn) == 10 * 4 and syn.labels.shape == (40, 10)
    assert (syn.hard_labels == torch.arange(10).repeat_interleave(4)).all()
    parts = syn.storage_bytes()
    assert parts["images"] == 10 * image_bytes(train.spec)  # one stored image per class
    assert parts["labels"] == 40 * 10 * 4  # a float32 label vector per decoded image


@pytest.mark.parametrize("method", ["mtt", "bptt", "kip"])
def test_a_codec_changes_what_is_learned_not_just_what_is_saved(method):
    """The stored tensor moves and the saved images are its decoding."""
    train = tiny_digits().train
    m = _cheap(method, codec="fred:0.25")
    start = m.fit(train, 1, iterations=0, seed=0)
    after = m.fit(train, 1, iterations=2, seed=0)
    moved = after.extras["fred.coefficients"] - start.extras["fred.coefficients"]
    assert moved.abs().max() > 0
    assert after.meta["codec"] == "fred:0.25" and len(after) == 10 * after.meta["emitted_per_class"]


@pytest.mark.paths_agree("fp32", steps=1)
def test_tesla_backward_through_a_codec_equals_the_unrolled_gradient():
    """TESLA's hand-made image gradient is carried through the codec's decoder by autograd:
    one iteration gives the same set as MTT's fully unrolled backward, through the frequency
    codec (float32 rounding of one step only)."""
    train = tiny_digits().train
    sets = []
    for backward in ("unroll", "tesla"):
        m = _cheap("mtt", codec="fred:0.5", backward=backward)
        sets.append(m.fit(train, 1, iterations=1, seed=0))
    a, b = (s.extras["fred.coefficients"] for s in sets)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_rtp_refuses_a_codec_of_its_own():
    with pytest.raises(ConfigError, match="rtp stores its own memory"):
        create_method("rtp", codec="formation:2")


def test_dm_moves_the_stored_coefficients():
    train = tiny_digits().train
    m = create_method("dm", dataset="tiny-digits", ipc=1, batch_real=8, codec="fred:0.25")
    start = m.fit(train, 1, iterations=0, seed=0)
    after = m.fit(train, 1, iterations=3, seed=0)
    assert not torch.allclose(start.extras["fred.coefficients"], after.extras["fred.coefficients"])
    assert len(after) == 10 * after.meta["emitted_per_class"]
    assert after.meta["codec"] == "fred:0.25"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("jpeg", "unknown codec"),
        ("fred:2", r"\(0, 1\]"),
        ("formation:x", "needs a number"),
        ("formation:0", ">= 1"),
        ("pixels:3", "no argument"),
    ],  # fmt: skip
)
def test_bad_codecs_are_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        make_codec(spec)
    for method in ("dm", "dc"):
        with pytest.raises(ConfigError, match="codec must be one of .*formation:F"):
            create_method(method, codec=spec)


def test_haba_starts_as_its_bases_and_says_when_it_does_not_fit():
    train = tiny_digits().train
    codec = make_codec("haba:3")
    codec.fit(train)
    x = train.images[:10]
    images = codec.decode(codec.encode(x, torch.Generator().manual_seed(0)))
    assert torch.equal(images.view(10, 3, *x.shape[1:]), x[:, None].expand(10, 3, *x.shape[1:]))
    with pytest.raises(ConfigError, match="haba:3 does not fit the bytes of IPC 1"):
        codec.emitted_per_class(1, train.spec)
    for method in ("dm", "dc"):  # before any step, whichever the method asks first
        with pytest.raises(ConfigError, match="haba:3 does not fit the bytes of IPC 1"):
            create_method(method, batch_real=8, codec="haba:3").fit(train, 1, iterations=1)


def test_haba_learns_different_hallucinators():
    m = create_method("dm", dataset="tiny-digits", ipc=2, batch_real=8, codec="haba:3", lr_img=0.1)
    syn = m.fit(tiny_digits().train, 2, iterations=5, seed=0)
    views = syn.images.view(10, 3, -1)  # one base per class, three hallucinations of it
    assert (views[:, 0] - views[:, 1]).abs().max() > 1e-4


def test_haba_weights_are_stored_scaled_and_older_sets_decode_at_scale_one(tmp_path, monkeypatch):
    import json

    from ddkit.data.codecs.haba import Factorisation
    from ddkit.data.synthetic import META_FILE, SyntheticSet

    train = tiny_digits().train
    codec = make_codec("haba:3")
    codec.fit(train)
    stored = codec.encode(train.images[:10], torch.Generator().manual_seed(0))
    _, weights = codec._unpack(stored)
    assert torch.equal(weights["scale"], torch.ones_like(weights["scale"]))
    raw = stored[-codec._num_params(1) :]  # the hallucinators' numbers as stored
    assert torch.allclose(
        raw * codec.weight_scale, torch.cat([w.flatten() for w in weights.values()])
    )
    monkeypatch.setattr(Factorisation, "weight_scale", 1.0)  # what every set before the scale had
    old = _cheap("dm", codec="haba:3").fit(train, 2, iterations=2, seed=0)
    folder = old.save(tmp_path / "old")
    meta = json.loads((folder / META_FILE).read_text())
    meta["provenance"].pop("hallucinator_weight_scale")
    meta.pop("settings_sha256")  # nor had they a checksum of their settings
    (folder / META_FILE).write_text(json.dumps(meta))
    monkeypatch.undo()
    assert Factorisation.weight_scale != 1.0
    assert torch.equal(SyntheticSet.load(folder, trust_settings=True).images, old.images)


@pytest.fixture
def short_autoencoder(monkeypatch):
    """The latent codec's autoencoder trained 40 steps instead of 2,000 (test speed)."""
    from ddkit.data.codecs.latent import Latent

    monkeypatch.setattr(Latent, "steps", 40)


@pytest.mark.usefixtures("short_autoencoder")
def test_latent_codes_decode_through_the_trained_decoder_and_count_it():
    train = tiny_digits().train
    codec = make_codec("latent:4")
    codec.fit(train)
    again = make_codec("latent:4")
    again.fit(train)  # seed 0: every run shares the same decoder
    w = [torch.cat([p.flatten() for p in c.decoder_.parameters()]) for c in (codec, again)]
    assert torch.equal(*w)
    x = train.images[: 10 * codec.emitted_per_class(10, train.spec)]
    codes = codec.encode(x, torch.Generator())
    assert codes.shape == (len(x), 4)
    mse = (codec.decode(codes) - x).pow(2).mean()
    assert mse < x.pow(2).mean()  # the decoder has learned something of the images
    syn = SyntheticSet.from_codec(codec, codes, train.spec)
    plain = 10 * 10 * (image_bytes(train.spec) + LABEL_BYTES)
    assert syn.storage_bytes()["total"] <= plain
    assert syn.storage_bytes()["total"] > codec._decoder_bytes(train.spec)
    with pytest.raises(ConfigError, match="latent:4 does not fit the bytes of IPC 1"):
        codec.emitted_per_class(1, train.spec)


@pytest.mark.usefixtures("short_autoencoder")
def test_dm_through_latent_codes_is_a_conforming_method():
    check_method("dm", ipc=10, overrides={"codec": "latent:4"})


@pytest.mark.usefixtures("short_autoencoder")
def test_dm_optimises_latent_codes():
    m = create_method("dm", dataset="tiny-digits", ipc=10, batch_real=8, codec="latent:4")
    start = m.fit(tiny_digits().train, 10, iterations=0, seed=0)
    after = m.fit(tiny_digits().train, 10, iterations=3, seed=0)
    assert not torch.allclose(start.extras["latent.codes"], after.extras["latent.codes"])
    assert torch.equal(start.extras["latent.decoder"], after.extras["latent.decoder"])


def test_idm_keeps_its_own_formation():
    with pytest.raises(ConfigError, match="idm stores multi-formation images through its own"):
        create_method("idm", codec="fred:0.5")


# ------------------------------------------------------------------ decoded on load


@pytest.mark.parametrize(("spec", "ipc"), [("formation:2", 1), ("fred:0.25", 1), ("haba:3", 2),
                                           ("latent:4", 10)])  # fmt: skip
def test_a_codec_set_is_saved_without_its_images_and_decoded_on_load(spec, ipc, tmp_path):
    from safetensors import safe_open

    from ddkit.data.synthetic import TENSOR_FILE, SyntheticSet

    train = tiny_digits().train
    syn = _cheap("dm", codec=spec).fit(train, ipc, iterations=1, seed=0)
    compact, whole = syn.save(tmp_path / "compact"), syn.save(tmp_path / "whole", compact=False)
    with safe_open(str(compact / TENSOR_FILE), "pt") as f:
        assert "images" not in f.keys()
    assert (compact / TENSOR_FILE).stat().st_size < (whole / TENSOR_FILE).stat().st_size
    back, plain = SyntheticSet.load(compact), SyntheticSet.load(whole)
    assert torch.equal(back.images, syn.images) and torch.equal(plain.images, syn.images)
    assert torch.equal(back.labels, syn.labels)
    assert back.storage_bytes() == syn.storage_bytes()


def test_idm_multi_formation_sets_decode_on_load_too(tmp_path):
    from ddkit.data.synthetic import SyntheticSet

    syn = _cheap("idm", factor=2).fit(tiny_digits().train, 1, iterations=1, seed=0)
    back = SyntheticSet.load(syn.save(tmp_path / "set"))
    assert torch.equal(back.images, syn.images)
    assert len(back) == 40


def test_a_set_whose_images_were_changed_keeps_them_and_a_broken_one_is_refused(tmp_path):
    import json

    from ddkit.data.synthetic import META_FILE, TENSOR_FILE, SyntheticSet
    from ddkit.errors import FileFormatError

    syn = _cheap("dm", codec="fred:0.25").fit(tiny_digits().train, 1, iterations=1, seed=0)
    edited = SyntheticSet(syn.images + 1, syn.labels, syn.spec, meta=syn.meta, extras=syn.extras)
    back = SyntheticSet.load(edited.save(tmp_path / "edited"))
    assert torch.equal(back.images, edited.images)  # not what the codec decodes: kept whole
    folder = syn.save(tmp_path / "set")
    meta = json.loads((folder / META_FILE).read_text())
    meta["provenance"]["codec"] = "pixels"  # (checksum still matches: only meta is edited)
    meta.pop("settings_sha256")  # as an older set, whose settings had no checksum
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match="no images and names no codec"):
        SyntheticSet.load(folder, trust_settings=True)
    assert (folder / TENSOR_FILE).exists()


def _latent_fitted(train, steps):
    codec = make_codec("latent:4")
    codec.steps = steps
    codec.fit(train)
    return codec


def test_the_latent_codecs_autoencoder_is_an_artifact_trained_once(tmp_path, monkeypatch):
    import json

    from ddkit.data.codecs import autoencoder
    from ddkit.data.codecs.latent import Latent
    from ddkit.errors import FileFormatError

    monkeypatch.setenv(autoencoder.ENV_VAR, str(tmp_path / "cache"))
    train = tiny_digits().train
    first = _latent_fitted(train, 20)
    (folder,) = (tmp_path / "cache").iterdir()
    meta = json.loads((folder / autoencoder.META_FILE).read_text())
    assert meta["settings"]["latent_dim"] == 4 and meta["spec"]["name"] == train.spec.name
    assert meta["reconstruction_mse"] == first.reconstruction_mse_

    def no_training(self, data):
        raise AssertionError("trained again instead of loading the artifact")

    monkeypatch.setattr(Latent, "_train", no_training)
    again = _latent_fitted(train, 20)
    for a, b in zip(first.decoder_.parameters(), again.decoder_.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="trained again"):  # other settings, other artifact
        _latent_fitted(train, 21)
    (folder / autoencoder.WEIGHTS_FILE).write_bytes(b"damaged")
    with pytest.raises(FileFormatError, match=folder.name):
        _latent_fitted(train, 20)


# ------------------------------------------------------------------ decoding settings checksummed


def _codec_set(spec: str = "haba:3") -> SyntheticSet:
    train = tiny_digits().train
    codec = make_codec(spec)
    codec.fit(train)
    n = codec.real_per_class(2, train.spec)
    index = train.sample_per_class(n, torch.Generator().manual_seed(0)).flatten()
    stored = codec.encode(train.images[index], torch.Generator().manual_seed(0))
    return SyntheticSet.from_codec(codec, stored, train.spec)


@pytest.mark.parametrize(
    ("spec", "key", "value"),
    [("haba:3", "hallucinator_weight_scale", 0.2), ("formation:2", "codec", "formation:3"),
     ("fred:0.25", "kept_coefficients", 3)],
)  # fmt: skip
def test_an_edited_decoding_setting_in_meta_json_is_refused(spec, key, value, tmp_path):
    import json

    from ddkit.data.synthetic import META_FILE
    from ddkit.errors import FileFormatError

    folder = _codec_set(spec).save(tmp_path / "set")
    meta = json.loads((folder / META_FILE).read_text())
    meta["provenance"][key] = value  # data.safetensors untouched: its own checksum still holds
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match="meta.json was edited") as e:
        SyntheticSet.load(folder)
    assert "\n" not in str(e.value)


def test_a_codec_set_saved_before_settings_were_checksummed_is_refused_until_re_saved(tmp_path):
    import json

    from ddkit.cli import main
    from ddkit.data.synthetic import META_FILE
    from ddkit.errors import FileFormatError

    syn = _codec_set("haba:3")
    folder = syn.save(tmp_path / "old")
    meta = json.loads((folder / META_FILE).read_text())
    meta.pop("settings_sha256")  # what every set before this change had
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match="--format set") as e:
        SyntheticSet.load(folder)
    assert "\n" not in str(e.value)
    assert main(["export", str(folder), "--to", str(tmp_path / "new"), "--format", "set"]) == 0
    assert torch.equal(SyntheticSet.load(tmp_path / "new").images, syn.images)


# ------------------------------------------------------------------ memory checked before allocating
def _no_big_allocations(monkeypatch):
    """Budget of 256 MiB: what a check refuses is then refused before it is allocated."""
    monkeypatch.setenv("DDKIT_MEMORY_BUDGET", str(256 * 2**20))


def test_a_huge_latent_width_is_refused_before_the_decoder_is_built(tmp_path, monkeypatch):
    from ddkit.errors import FileFormatError

    _no_big_allocations(monkeypatch)
    codec = make_codec("latent:4")
    codec.width = 2**40  # as a crafted set's latent_width would set it
    with pytest.raises(ConfigError, match="memory budget"):
        codec.emitted_per_class(10, tiny_digits().train.spec)
    codec = make_codec("latent:4")
    spec = tiny_digits().train.spec
    extras = {"latent.codes": torch.zeros(10, 4), "latent.decoder": torch.zeros(100)}
    with pytest.raises(FileFormatError, match="decoder of .* numbers"):
        codec.restore(spec, {"latent_width": 2**30}, extras)  # 100 numbers: not this decoder


def test_a_huge_latent_dimension_option_is_refused_before_allocating(monkeypatch):
    _no_big_allocations(monkeypatch)
    with pytest.raises(ConfigError, match="memory budget"):
        make_codec(f"latent:{2**40}").emitted_per_class(10, tiny_digits().train.spec)


def test_a_set_decoding_to_more_than_the_budget_is_refused_before_decoding(tmp_path, monkeypatch):
    import json

    from ddkit.data.synthetic import META_FILE, settings_digest
    from ddkit.errors import FileFormatError

    folder = _codec_set("haba:3").save(tmp_path / "set")
    meta = json.loads((folder / META_FILE).read_text())
    meta["num_images"] = 10**9  # a crafted file: its settings checksum recomputed
    meta["settings_sha256"] = settings_digest(meta)
    (folder / META_FILE).write_text(json.dumps(meta))
    _no_big_allocations(monkeypatch)
    with pytest.raises(FileFormatError, match="memory budget"):
        SyntheticSet.load(folder)
