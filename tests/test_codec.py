import numpy as np
import pytest
import torch

from hitcodec import codec
from hitcodec.api import compress_image, decompress
from hitcodec.bitstream import BitstreamError
from hitcodec.coding import CodingError
from hitcodec.image import CodecImage
from hitcodec.weights import LoadedModel, model_id

from conftest import make_tiny


def _image(h, w, seed=0):
    return CodecImage(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), None, "RGB")


@pytest.mark.parametrize("size", [(33, 47), (1, 1), (64, 130)])
def test_latents_round_trip_exactly(tiny, size):
    coded = codec.encode(tiny, _image(*size), 2.0, 0.5)
    decoded = codec.decode(tiny, coded.data)
    assert decoded.image.rgb.shape == (*size, 3)
    for name in codec.LAYERS:
        assert np.array_equal(decoded.symbols[name], coded.symbols[name])
    assert any(np.abs(coded.symbols[name]).sum() > 0 for name in codec.LAYERS)  # something was actually coded


def test_decoded_image_matches_the_encoder_side_reconstruction(tiny, photo):
    """Decoding twice gives identical pixels, and encoding twice identical bytes."""
    image = CodecImage(photo, None, "RGB")
    a, b = codec.encode(tiny, image, 1.0, 1.0), codec.encode(tiny, image, 1.0, 1.0)
    assert a.data == b.data
    assert np.array_equal(codec.decode(tiny, a.data).image.rgb, codec.decode(tiny, a.data).image.rgb)


def test_actual_bits_close_to_estimate(tiny, photo):
    coded = codec.encode(tiny, CodecImage(photo, None, "RGB"), 0.3, 0.3)
    for layer in coded.layers:
        # ANS adds at most one 32-bit word of overhead per stream beyond rounding to words
        assert abs(8 * layer.payload_bytes - layer.estimated_bits) <= 0.03 * layer.estimated_bits + 64


def test_wrong_model_is_named(tiny):
    other_model = make_tiny(seed=1)
    other = LoadedModel(other_model, model_id(other_model), "other")
    data = codec.encode(tiny, _image(16, 16), 1.0, 1.0).data
    with pytest.raises(codec.ModelMismatchError) as err:
        codec.decode(other, data)
    assert tiny.model_id_hex in str(err.value) and other.model_id_hex in str(err.value)


def test_model_id_depends_on_weights_not_order(tiny):
    model = make_tiny()
    assert model_id(model) == tiny.model_id
    model.g_s[0].bias.data[0] += 1e-3
    assert model_id(model) != tiny.model_id


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf"), 0.099, 10.01, 10**400])
def test_betas_outside_the_square_are_refused(tiny, beta):
    with pytest.raises(ValueError, match="beta"):
        codec.encode(tiny, _image(8, 8), beta, 1.0)
    with pytest.raises(ValueError, match="beta"):
        codec.encode(tiny, _image(8, 8), 1.0, beta)


def test_files_at_the_ends_of_a_trained_range_decode():
    # float32, the header's precision, puts 0.01 below 0.01 and 0.3 above 0.3: the decoder once refused such files
    from dataclasses import replace

    from conftest import TINY

    model = make_tiny(config=replace(TINY, beta_min=0.01, beta_max=0.3))
    loaded = LoadedModel(model, model_id(model), "ends")
    for beta2, beta1 in ((0.01, 0.3), (0.3, 0.01)):
        coded = codec.encode(loaded, _image(20, 24), beta2, beta1)
        decoded = codec.decode(loaded, coded.data)
        assert decoded.header.beta2 < 0.01 or decoded.header.beta1 < 0.01  # float32(0.01), as stored
        for name in codec.LAYERS:
            assert np.array_equal(decoded.symbols[name], coded.symbols[name])
    with pytest.raises(ValueError, match="beta2 must be a finite number in \\[0.01, 0.3\\]"):
        codec.encode(loaded, _image(8, 8), 0.0099, 0.1)
    model = make_tiny()  # the default range [0.1, 10], where float32 puts 0.1 above 0.1
    loaded = LoadedModel(model, model_id(model), "default")
    coded = codec.encode(loaded, _image(8, 8), 0.1, 10)
    assert codec.decode(loaded, coded.data).header.beta2 > 0.1


def test_alpha_is_kept_losslessly(tiny):
    rng = np.random.default_rng(3)
    alpha = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    image = CodecImage(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), alpha, "RGBA")
    out = decompress(compress_image(image, model=tiny).data, model=tiny)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)


def test_alpha_plane_is_checked_first_and_must_end_with_its_stream(tiny, monkeypatch):
    import dataclasses

    from hitcodec import bitstream

    rng = np.random.default_rng(4)
    image = CodecImage(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), rng.integers(0, 256, (20, 30), np.uint8),
                       "RGBA")
    header, parts = bitstream.unpack(codec.encode(tiny, image, 1.0, 1.0).data)
    with monkeypatch.context() as m:  # a header claiming more pixels than the alpha plane holds: no latent decoded
        m.setattr(codec, "walk_layers", lambda *args: pytest.fail("decoded the latents first"))
        with pytest.raises(BitstreamError, match="alpha"):
            codec.decode(tiny, bitstream.pack(dataclasses.replace(header, width=120), parts))
    with pytest.raises(BitstreamError, match="alpha"):  # bytes after the zlib stream (with a valid CRC)
        codec.decode(tiny, bitstream.pack(header, [*parts[:-1], parts[-1] + b"junk"]))


def test_payload_bytes_are_checked_before_the_priors(tiny, monkeypatch):
    # a 90-byte file declaring 4096^2 with a z1 payload of 5 bytes took 13 s and 1.5 GB before it was refused
    import dataclasses

    from hitcodec import bitstream, coding

    header, parts = bitstream.unpack(codec.encode(tiny, _image(20, 30), 1.0, 1.0).data)
    big = dataclasses.replace(header, width=4096, height=4096)
    monkeypatch.setattr(codec, "walk_layers", lambda *args: pytest.fail("computed the priors first"))
    for layer, bad in ((0, parts[0] + b"x"), (1, parts[1] + b"x"), (1, parts[1] + bytes(4))):
        corrupt = [bad if i == layer else part for i, part in enumerate(parts)]
        with pytest.raises(coding.CodingError, match=r"^corrupt hitcodec file: z[12] payload (length is not a multiple "
                                                     r"of 4|is truncated \(its last word is zero)"):
            codec.decode(tiny, bitstream.pack(big, corrupt))


def test_calls_from_threads_run_one_at_a_time_and_leave_onednn_alone(tiny, monkeypatch):
    """The priors switch oneDNN off for the whole process: a concurrent call must not run while they do."""
    import threading


    image = _image(40, 40)
    expected = codec.encode(tiny, image, 1.0, 1.0).data
    inside, release, results = threading.Event(), threading.Event(), {}
    walk_layers = codec.walk_layers

    def held(*args):
        inside.set()
        release.wait(30)
        return walk_layers(*args)

    monkeypatch.setattr(codec, "walk_layers", held)
    first = threading.Thread(target=lambda: results.update(first=codec.encode(tiny, image, 1.0, 1.0).data))
    first.start()
    assert inside.wait(30)
    monkeypatch.setattr(codec, "walk_layers", walk_layers)
    second = threading.Thread(target=lambda: results.update(second=codec.decode(tiny, expected).symbols))
    second.start()
    second.join(1.0)
    waited = second.is_alive()  # a tiny model decodes in milliseconds: alive means it waits for the first call
    release.set()
    first.join(), second.join()
    assert waited and results["first"] == expected and "second" in results
    assert torch.backends.mkldnn.enabled


def test_corrupted_payload_is_rejected(tiny):
    data = bytearray(codec.encode(tiny, _image(40, 40), 1.0, 1.0).data)
    data[-3] ^= 0x10
    with pytest.raises(BitstreamError, match="CRC32"):
        codec.decode(tiny, bytes(data))


def test_latents_that_decode_differently_are_rejected(tiny):
    """Format version 2 stores a CRC-32 of the latents: a decoder whose priors come out differently from the
    encoder's (another machine's arithmetic) fails with a clear error instead of writing garbage."""
    from dataclasses import replace

    from hitcodec import bitstream

    coded = codec.encode(tiny, _image(40, 40), 1.0, 1.0)
    assert coded.header.version == 2 and coded.header.latents_crc == codec.latents_crc(coded.symbols)
    header, parts = bitstream.unpack(coded.data)
    forged = bitstream.pack(replace(header, latents_crc=header.latents_crc ^ 1), parts)
    with pytest.raises(CodingError, match="latents CRC-32 mismatch"):
        codec.decode(tiny, forged)


def test_priors_are_computed_in_float64(tiny, monkeypatch):
    """The encoder's and decoder's scales come from the float64 copy of the prior networks."""
    seen, walk_layers = [], codec.walk_layers

    def spy(model, e, *args):
        seen.append((next(model.parameters()).dtype, e.dtype))
        return walk_layers(model, e, *args)

    monkeypatch.setattr(codec, "walk_layers", spy)
    codec.decode(tiny, codec.encode(tiny, _image(40, 40), 1.0, 1.0).data)
    assert seen == [(torch.float64, torch.float64)] * 2


def test_verify_checks_latents(tiny):
    coded = compress_image(_image(24, 24).rgb, 1.0, 2.0, model=tiny, verify=True)
    assert coded.header.beta1 == 2.0


def test_tiled_transforms_match_whole_image_pass(tiny, monkeypatch):

    x = torch.rand(1, 3, 192, 320)
    e = codec._embed(tiny.model, 1.0, 1.0)
    with torch.no_grad():
        whole_h = tiny.model.analysis(x, e)
        z1 = torch.randn(1, 8, 12, 20) * 3
        whole_x = tiny.model.synthesis(z1, e)
        monkeypatch.setattr(codec, "ANALYSIS_TILE", 64)
        monkeypatch.setattr(codec, "SYNTHESIS_TILE", 4)
        tiled_h, _ = codec._bottom_up(tiny.model, x, e)
        tiled_x = codec._synthesis(tiny.model, z1, e)
    assert torch.allclose(whole_h, tiled_h, atol=1e-4)
    assert torch.allclose(whole_x, tiled_x, atol=1e-4)


def test_small_tiles_still_round_trip(tiny, photo, monkeypatch):
    monkeypatch.setattr(codec, "ANALYSIS_TILE", 64)
    monkeypatch.setattr(codec, "SYNTHESIS_TILE", 2)
    coded = codec.encode(tiny, CodecImage(photo, None, "RGB"), 1.0, 1.0)
    decoded = codec.decode(tiny, coded.data)
    assert all(np.array_equal(decoded.symbols[n], coded.symbols[n]) for n in codec.LAYERS)


def test_latent_bins_start_as_the_identity_and_round_trip(photo):
    """A model with learned bin widths (GHVAEConfig.latent_bins) starts as the model without them, so trained
    weights can be continued with them; once the widths depend on beta, its latents still round-trip exactly."""
    from dataclasses import replace


    from hitcodec.models.ghvae import GHVAE

    from conftest import TINY

    base = make_tiny()
    binned = GHVAE(replace(TINY, latent_bins=True)).eval()
    missing = binned.load_state_dict(base.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["bins_z1.bias", "bins_z1.weight", "bins_z2.bias", "bins_z2.weight"]
    x = torch.from_numpy(photo[:64, :64]).permute(2, 0, 1)[None].float() / 255
    b2, b1 = torch.tensor([0.3]), torch.tensor([4.0])
    with torch.no_grad():
        ours, theirs = binned(x, b2, b1), base(x, b2, b1)
        assert all(torch.equal(ours[k], theirs[k]) for k in ("x_hat", "rate_z2", "rate_z1"))
        torch.manual_seed(0)
        binned.bins_z1.weight.normal_(0, 0.5)
        binned.bins_z2.weight.normal_(0, 0.5)
    loaded = LoadedModel(binned, model_id(binned), "binned")
    assert model_id(binned) != model_id(base) and binned.config.to_dict()["latent_bins"] is True
    image = CodecImage(photo, None, "RGB")
    widths = []
    for beta2, beta1 in ((0.2, 5.0), (5.0, 0.2)):
        coded = codec.encode(loaded, image, beta2, beta1)
        decoded = codec.decode(loaded, coded.data)
        assert all(np.array_equal(decoded.symbols[n], coded.symbols[n]) for n in codec.LAYERS)
        for layer in coded.layers:
            assert abs(8 * layer.payload_bytes - layer.estimated_bits) <= 0.03 * layer.estimated_bits + 64
        widths.append(binned.bin_width("z1", codec._embed(binned, beta2, beta1)))
    assert not torch.allclose(widths[0], widths[1])


def test_bins_max_caps_the_bin_widths_straight_through(photo):
    """GHVAEConfig.bins_max: no width above the cap at any beta, while a width held there keeps the gradient it would
    have at the cap (straight through), so it can come back down; the cap is part of the stored config and the
    model id."""
    from dataclasses import replace

    from hitcodec.models.ghvae import GHVAE, GHVAEConfig
    from hitcodec.weights import model_from_state

    from conftest import TINY

    with pytest.raises(ValueError, match="bins_max"):
        GHVAEConfig(bins_max=-1.0)
    torch.manual_seed(0)
    capped = GHVAE(replace(TINY, latent_bins=True, bins_max=1.5))
    with torch.no_grad():
        capped.bins_z1.weight.normal_(0, 2)
        capped.bins_z1.bias.copy_(torch.linspace(-2, 2, TINY.z1_channels))
    e = codec._embed(capped, 0.1, 10.0)
    width = capped.bin_width("z1", e).flatten()
    width.sum().backward()
    width = width.detach()
    assert float(width.max()) == pytest.approx(1.5) and float(width.min()) < 1.5
    grad = capped.bins_z1.bias.grad
    assert torch.allclose(grad, width)  # d(sum of widths) / d(ln width): the width itself, capped or not
    assert capped.config.to_dict()["bins_max"] == 1.5 and "bins_max" not in TINY.to_dict()
    state = {"model_config": capped.config.to_dict(), "model": capped.state_dict()}
    assert model_from_state(state).config.bins_max == 1.5
    uncapped = GHVAE(replace(TINY, latent_bins=True))
    uncapped.load_state_dict(capped.state_dict())
    assert model_id(uncapped) != model_id(capped)
    loaded = LoadedModel(capped.eval(), model_id(capped), "capped")
    coded = codec.encode(loaded, CodecImage(photo, None, "RGB"), 0.5, 2.0)
    decoded = codec.decode(loaded, coded.data)
    assert all(np.array_equal(decoded.symbols[n], coded.symbols[n]) for n in codec.LAYERS)


def test_z1_min_channels_masks_z1_by_beta1(photo):
    """GHVAEConfig.z1_min_channels: the first K z1 channels are in use at the top beta1, all at the bottom, more in
    between; a channel not in use codes the symbol 0 at next to no rate (training and eval), files round-trip, and
    the option is part of the stored config and the model id."""
    from dataclasses import replace

    from hitcodec.models.ghvae import GHVAE, GHVAEConfig
    from hitcodec.weights import model_from_state

    from conftest import TINY

    for bad in (-1, 9, 2.5):
        with pytest.raises(ValueError, match="z1_min_channels"):
            GHVAEConfig(n=16, z1_channels=8, z2_channels=4, embed=8, z1_min_channels=bad)
    torch.manual_seed(0)
    masked = GHVAE(replace(TINY, latent_bins=True, z1_min_channels=2))
    in_use = {b1: int(masked.z1_mask(codec._embed(masked, 1.0, b1)).sum()) for b1 in (10.0, 1.0, 0.1)}
    assert in_use == {10.0: 2, 1.0: 5, 0.1: 8}  # 2 + (8 - 2) * t, t linear in ln beta1 from 0 at 10 to 1 at 0.1
    assert masked.z1_mask(codec._embed(masked, 0.1, 10.0)).sum() == 2  # beta2 does not matter
    x = torch.from_numpy(photo[:64, :64]).permute(2, 0, 1)[None].float() / 255
    beta = torch.tensor([10.0])
    masked.train()
    rate_train = masked(x, beta, beta)["rate_z1"].detach()
    masked.eval()
    rate_eval = masked(x, beta, beta)["rate_z1"].detach()
    plain = GHVAE(replace(TINY, latent_bins=True)).eval()
    assert float(rate_eval) < 0.5 * float(plain(x, beta, beta)["rate_z1"].detach())  # 2 of 8 channels carry it
    mean, scale = masked.prior_z1(masked.top_down(torch.zeros(1, 4, 1, 1), codec._embed(masked, 10.0, 10.0)),
                                  codec._embed(masked, 10.0, 10.0))
    assert torch.all(scale[:, 2:] == 0.11) and torch.all(scale[:, :2] > 0.11) and float(rate_train) > 0
    loaded = LoadedModel(masked, model_id(masked), "masked")
    for beta2, beta1 in ((10.0, 10.0), (0.5, 0.4), (1.0, 0.1)):
        coded = codec.encode(loaded, CodecImage(photo, None, "RGB"), beta2, beta1)
        decoded = codec.decode(loaded, coded.data)
        assert all(np.array_equal(decoded.symbols[n], coded.symbols[n]) for n in codec.LAYERS)
        k = int(masked.z1_mask(codec._embed(masked, beta2, beta1)).sum())
        assert not coded.symbols["z1"].reshape(8, -1)[k:].any()
    assert masked.config.to_dict()["z1_min_channels"] == 2 and "z1_min_channels" not in TINY.to_dict()
    state = {"model_config": masked.config.to_dict(), "model": masked.state_dict()}
    again = model_from_state(state)
    assert again.config.z1_min_channels == 2 and model_id(again) == model_id(masked)


def test_mask_synthesis_keeps_the_other_betas_off_the_masked_channels(photo):
    """GHVAEConfig.mask_synthesis: an image at a beta1 that leaves z1 channels out sends no gradient to the synthesis
    weights that read them (without it, it does: they read the prior mean); files round-trip."""
    from dataclasses import replace

    from hitcodec.models.ghvae import GHVAE, GHVAEConfig, ghvae_loss

    from conftest import TINY

    with pytest.raises(ValueError, match="mask_synthesis"):
        GHVAEConfig(mask_synthesis=True)
    x = torch.from_numpy(photo[:64, :64]).permute(2, 0, 1)[None].float() / 255
    beta = torch.tensor([10.0])  # channels 2..7 not in use
    grads = {}
    for mask_synthesis in (False, True):
        torch.manual_seed(0)
        model = GHVAE(replace(TINY, latent_bins=True, z1_min_channels=2, mask_synthesis=mask_synthesis))
        ghvae_loss(model(x, beta, beta), x, beta, beta, TINY.sigma_x)["loss"].backward()
        first = model.g_s[0].weight.grad  # ConvTranspose2d: (in = z1 channels, out, k, k)
        grads[mask_synthesis] = first[2:].abs().sum(), first[:2].abs().sum()
    assert grads[False][0] > 0 and grads[True][0] == 0 and grads[True][1] > 0
    loaded = LoadedModel(model.eval(), model_id(model), "masked")
    assert model.config.to_dict()["mask_synthesis"] and "mask_synthesis" not in TINY.to_dict()
    coded = codec.encode(loaded, CodecImage(photo, None, "RGB"), 0.3, 5.0)
    decoded = codec.decode(loaded, coded.data)
    assert all(np.array_equal(decoded.symbols[n], coded.symbols[n]) for n in codec.LAYERS)


def test_decoder_gains_start_as_the_identity_and_scale_only_the_decoders_input(photo):
    """GHVAEConfig.decoder_gains: at initialisation the model computes what the same weights without them compute;
    a gain changes the reconstruction but not the symbols of z2 (the encoder's Δ alone sets them); files round-trip
    and the option is part of the stored config and the model id."""
    from dataclasses import replace

    from hitcodec.models.ghvae import GHVAE
    from hitcodec.weights import model_from_state

    from conftest import TINY

    torch.manual_seed(0)
    gained = GHVAE(replace(TINY, latent_bins=True, decoder_gains=True)).eval()
    plain = GHVAE(replace(TINY, latent_bins=True)).eval()
    plain.load_state_dict({k: v for k, v in gained.state_dict().items() if not k.startswith("gains_")})
    x = torch.from_numpy(photo[:64, :64]).permute(2, 0, 1)[None].float() / 255
    beta2, beta1 = torch.tensor([0.5]), torch.tensor([2.0])
    with torch.no_grad():
        before = gained(x, beta2, beta1, latents=True)
        assert torch.equal(before["x_hat"], plain(x, beta2, beta1)["x_hat"])
        gained.gains_z1.bias.fill_(-0.5)
        after = gained(x, beta2, beta1, latents=True)
    assert torch.equal(after["z2_hat"], before["z2_hat"]) and not torch.allclose(after["x_hat"], before["x_hat"])
    loaded = LoadedModel(gained, model_id(gained), "gained")
    coded = codec.encode(loaded, CodecImage(photo, None, "RGB"), 0.3, 5.0)
    decoded = codec.decode(loaded, coded.data)
    assert all(np.array_equal(decoded.symbols[n], coded.symbols[n]) for n in codec.LAYERS)
    assert gained.config.to_dict()["decoder_gains"] and "decoder_gains" not in TINY.to_dict()
    again = model_from_state({"model_config": gained.config.to_dict(), "model": gained.state_dict()})
    assert again.config.decoder_gains and model_id(again) == model_id(gained) != model_id(plain)


def test_cond_kernels_start_as_the_plain_convolution_and_round_trip(photo):
    """A CondConv layer (GHVAEConfig.cond_kernels) starts as its plain convolution; once its kernel depends on beta,
    each image of a batch still gets its own kernel, and the model's latents round-trip exactly."""
    from dataclasses import replace


    from hitcodec.models.ghvae import CondConv, conv, deconv

    from conftest import TINY

    torch.manual_seed(0)
    x, e = torch.rand(3, 8, 16, 16), torch.randn(3, 5)
    for base in (conv(8, 6), deconv(8, 6)):
        layer = CondConv(base, 2, 5)
        with torch.no_grad():
            assert torch.allclose(layer(x, e), base(x), atol=1e-6)
            layer.experts.normal_(0, 0.1)
            batched = layer(x, e)
            assert not torch.allclose(batched, base(x), atol=1e-3)
            assert all(torch.allclose(batched[i:i + 1], layer(x[i:i + 1], e[i:i + 1]), atol=1e-5) for i in range(3))
    model = make_tiny(config=replace(TINY, cond_kernels=2))
    assert model.config.to_dict()["cond_kernels"] == 2 and "cond_kernels" not in TINY.to_dict()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, CondConv):
                module.experts.normal_(0, 0.1)
    loaded = LoadedModel(model, model_id(model), "cond")
    for beta2, beta1 in ((0.2, 5.0), (5.0, 0.2)):
        coded = codec.encode(loaded, CodecImage(photo, None, "RGB"), beta2, beta1)
        decoded = codec.decode(loaded, coded.data)
        assert all(np.array_equal(decoded.symbols[n], coded.symbols[n]) for n in codec.LAYERS)
    with pytest.raises(ValueError, match="cond_kernels"):
        replace(TINY, cond_kernels=-1)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_child_forked_while_another_thread_codes_can_code(tiny):
    import os
    import threading
    import time


    image = _image(16, 16)
    held, release = threading.Event(), threading.Event()

    def coding_thread():  # holds the codec's lock, as a thread in the middle of a call does
        with codec._ONE_AT_A_TIME:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=coding_thread)
    thread.start()
    try:
        assert held.wait(30)
        pid = os.fork()
        if pid == 0:  # the child: must not wait for a lock that no thread of its own will release
            code = 1
            try:
                torch.set_num_threads(1)  # torch's thread pool does not survive a fork
                codec.encode(tiny, image, 1.0, 1.0)
                code = 0
            finally:
                os._exit(code)
        for _ in range(300):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child waited on the lock of its parent's thread")
    finally:
        release.set()
        thread.join()
    assert os.waitstatus_to_exitcode(status) == 0


def test_refinement_codes_better_latents_that_decode(tiny, photo, monkeypatch):
    """compress --refine: the refined z1 decodes like any other, the same image gives the same file, and the
    rounded objective of the refined offsets is never above the encoder's own (the best check is kept); a z1 grid
    larger than a tile is refined tile by tile, and the tiles' objectives add up to the whole image's."""
    from hitcodec import refine
    from hitcodec.models.ghvae import pad_to_stride

    image = CodecImage(photo[:40, :56], None, "RGB")
    coded = codec.encode(tiny, image, 0.5, 0.5, refine_steps=6)
    assert codec.encode(tiny, image, 0.5, 0.5, refine_steps=6).data == coded.data
    decoded = codec.decode(tiny, coded.data)
    assert all(np.array_equal(decoded.symbols[n], coded.symbols[n]) for n in codec.LAYERS)
    model, x = tiny.model, torch.from_numpy(image.rgb.copy()).permute(2, 0, 1)[None].float() / 255
    e = codec._embed(model, 0.5, 0.5)
    with torch.no_grad():
        h, y2 = codec._bottom_up(model, pad_to_stride(x), e)
        ctx, mean1, scale1 = refine.z1_context(model, y2, e)
        o1 = model.posterior_z1(h, ctx, mean1, e) - mean1
    best, history = refine.refine_z1(model, x, e, mean1, scale1, o1, 0.5, 20, lr=0.05, check_every=5)
    assert len(history) == 5 and min(history) <= history[0]
    for bad, error in ((-1, ValueError), (np.int64(-1), ValueError), (1.5, TypeError), (True, TypeError),
                       ("2", TypeError)):
        with pytest.raises(error, match="refine_steps must be"):
            codec.encode(tiny, image, 1.0, 1.0, refine_steps=bad)
    assert codec.encode(tiny, image, 0.5, 0.5, refine_steps=np.int64(6)).data == coded.data
    # a z1 grid larger than tile + halo is refined tile by tile, each tile with its neighbours as context
    image = CodecImage(photo[:120, :100], None, "RGB")  # z1: 8 x 8 positions
    x = torch.from_numpy(image.rgb.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        h, y2 = codec._bottom_up(model, pad_to_stride(x), e)
        ctx, mean1, scale1 = refine.z1_context(model, y2, e)
        o1 = model.posterior_z1(h, ctx, mean1, e) - mean1
    args = (model, x, e, mean1, scale1, o1, 0.5)
    _, whole = refine.refine_z1(*args, 0)
    _, tiles = refine.refine_z1(*args, 0, tile=3, halo=2)  # 9 tiles; 2 positions hold the synthesis's reach
    assert tiles == pytest.approx(whole, rel=1e-6)  # the tiles' own pixels and rates add up to the whole
    best, history = refine.refine_z1(*args, 20, lr=0.05, check_every=5, tile=3, halo=2)
    assert len(history) == 5 and min(history) <= history[0] and not torch.equal(best, o1)
    monkeypatch.setattr(refine, "REFINE_TILE", 3)
    monkeypatch.setattr(refine, "REFINE_HALO", 2)
    assert torch.equal(refine.refine_z1(*args, 20, lr=0.05, check_every=5)[0], best)
    coded = codec.encode(tiny, image, 0.5, 0.5, refine_steps=6)
    assert codec.encode(tiny, image, 0.5, 0.5, refine_steps=6).data == coded.data
    decoded = codec.decode(tiny, coded.data)
    assert all(np.array_equal(decoded.symbols[n], coded.symbols[n]) for n in codec.LAYERS)
