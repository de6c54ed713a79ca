"""Model builder: reference parameter counts, in-model preprocessing, weights files, ImageNet offline, fine-tuning."""
import functools
import http.server
import threading

import keras
import numpy as np
import pytest

from cxrlib import models
from cxrlib.backbones import BACKBONES
from cxrlib.contract import ARCHS

SIZE = 32


@pytest.fixture(scope="module")
def frozen_models():
    """Both architectures with a frozen base and the reference head, built once at 32 px."""
    return {arch: models.build_model(arch, SIZE, weights=None, train_base=False) for arch in ARCHS}


@pytest.mark.parametrize("arch, trainable, non_trainable", [
    ("resnet50", 2_099_201, 23_587_712),
    ("densenet121", 1_050_625, 7_037_504),
])
def test_frozen_base_parameter_counts_match_reference_study(frozen_models, arch, trainable, non_trainable):
    summary = models.parameter_summary(frozen_models[arch], keras.optimizers.Adam())
    assert summary.loc["trainable", "params"] == trainable
    assert summary.loc["non_trainable", "params"] == non_trainable
    assert summary.loc["total", "params"] == trainable + non_trainable
    # Adam keeps two moments per trainable weight, plus its iteration count and learning rate.
    assert summary.loc["optimizer", "params"] == 2 * trainable + 2
    assert summary.loc["trainable", "mb"] == pytest.approx(trainable * 4 / 2**20)


@pytest.mark.parametrize("arch, reference", [
    ("resnet50", keras.applications.resnet50.preprocess_input),
    ("densenet121", keras.applications.densenet.preprocess_input),
])
def test_preprocess_matches_keras_preprocess_input(arch, reference):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(models.preprocess(pixels, BACKBONES[arch].preprocess_mode))
    np.testing.assert_allclose(ours, reference(pixels.copy()), rtol=1e-5, atol=1e-4)


def test_preprocess_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="'caffe' or 'torch', got 'tf'"):
        models.preprocess(np.zeros((1, 4, 4, 3), np.float32), "tf")


def test_registry_names_every_arch_once():
    assert tuple(BACKBONES) == ARCHS
    for name, backbone in BACKBONES.items():
        assert backbone.name == name and hasattr(keras.applications, backbone.application)
        assert backbone.title and backbone.intro.strip()


def test_reference_head_layout_and_float32_output(frozen_models):
    model = frozen_models["resnet50"]
    assert [layer.name for layer in model.layers[-4:]] == ["pool", *models.HEAD_LAYERS]
    assert model.get_layer("head_dense").units == 1024
    assert model.get_layer("head_dropout").rate == 0.5
    assert model.output.dtype == "float32"
    assert not models.backbone_of(model).trainable


def test_frozen_base_keeps_batchnorm_in_inference_mode():
    model = models.build_model("resnet50", SIZE, weights=None, train_base=False, dropout=0.0)
    images = np.random.default_rng(1).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(model(images, training=True), model(images, training=False), rtol=1e-5, atol=1e-6)


def test_saved_model_round_trips_in_safe_mode(frozen_models, tmp_path):
    model = frozen_models["resnet50"]
    images = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    loaded = models.load_model(tmp_path / "model.keras")  # safe_mode=True is Keras' default
    np.testing.assert_allclose(loaded(images, training=False), model(images, training=False), atol=1e-6)


def test_backbone_weights_load_from_a_file(tmp_path):
    source = models.build_backbone("resnet50", SIZE, weights=None)
    path = tmp_path / "resnet50_backbone.weights.h5"
    source.save_weights(path)
    model = models.build_model("resnet50", SIZE, weights=path, train_base=False)
    for expected, loaded in zip(source.get_weights(), models.backbone_of(model).get_weights()):
        np.testing.assert_array_equal(expected, loaded)


def test_missing_weights_file_names_the_options(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights='imagenet', None"):
        models.build_model("resnet50", SIZE, weights=tmp_path / "nope.weights.h5")


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served
    server.shutdown()
    server.server_close()


def test_imagenet_offline_error_names_the_file_and_the_scratch_option(tmp_path, monkeypatch, local_server):
    base_url, _ = local_server  # serves nothing: the download fails like an offline machine, without internet
    _, file_name, md5 = models.IMAGENET_WEIGHTS["resnet50"]
    monkeypatch.setitem(models.IMAGENET_WEIGHTS, "resnet50", (base_url, file_name, md5))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(models.WeightsUnavailableError) as error:
        models.build_model("resnet50", SIZE, weights="imagenet")
    message = str(error.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "keras_home" / "models") in message
    assert "weights=None" in message and "cpu" in message


def test_imagenet_weights_are_downloaded_once_then_read_from_the_keras_cache(tmp_path, monkeypatch, local_server):
    base_url, served = local_server
    source = models.build_backbone("resnet50", SIZE, weights=None)
    _, file_name, _ = models.IMAGENET_WEIGHTS["resnet50"]
    source.save(served / file_name)  # Keras' legacy .h5 layout, as the published weights files use
    monkeypatch.setitem(models.IMAGENET_WEIGHTS, "resnet50", (base_url, file_name, models.file_md5(served / file_name)))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    model = models.build_model("resnet50", SIZE, weights="imagenet", train_base=False)
    assert (tmp_path / "keras_home" / "models" / file_name).is_file()
    for expected, loaded in zip(source.get_weights(), models.backbone_of(model).get_weights()):
        np.testing.assert_array_equal(expected, loaded)
    (served / file_name).unlink()  # a second build must not need the server
    models.imagenet_weights_path("resnet50")


def test_corrupt_cached_imagenet_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / models.IMAGENET_WEIGHTS["densenet121"][1]).write_bytes(b"partial download")
    with pytest.raises(models.WeightsUnavailableError, match="corrupt or incomplete"):
        models.imagenet_weights_path("densenet121")


@pytest.mark.parametrize("arch", ARCHS)
def test_unfreeze_from_unfreezes_top_blocks_but_keeps_batchnorm_frozen(arch):
    model = models.build_model(arch, SIZE, weights=None, train_base=False)
    models.unfreeze_from(model)
    base = models.backbone_of(model)
    names = [layer.name for layer in base.layers]
    first = next(i for i, name in enumerate(names) if name.startswith(BACKBONES[arch].finetune_from))
    assert not any(layer.trainable for layer in base.layers[:first])
    top = base.layers[first:]
    assert all(layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in top)
    assert any(isinstance(layer, keras.layers.Conv2D) for layer in top)
    head_only = 2_099_201 if arch == "resnet50" else 1_050_625
    assert models.parameter_summary(model).loc["trainable", "params"] > head_only


def test_unfreeze_from_unknown_block_lists_the_blocks(frozen_models):
    with pytest.raises(ValueError, match="conv5_block1"):
        models.unfreeze_from(frozen_models["resnet50"], "conv9_block1")


def test_bad_arch_and_too_small_images_are_rejected():
    with pytest.raises(ValueError, match="arch must be one of"):
        models.build_model("vgg16", SIZE)
    with pytest.raises(ValueError, match="at least 32"):
        models.build_model("resnet50", 16)


@pytest.fixture(scope="module")
def backbone_files(tmp_path_factory):
    """{arch: (backbone, its saved weights file)} for both architectures, from scratch at 32 px."""
    folder = tmp_path_factory.mktemp("backbones")
    files = {}
    for arch in ARCHS:
        backbone = models.build_backbone(arch, SIZE, weights=None)
        backbone.save_weights(folder / f"{arch}_radiology.weights.h5")
        files[arch] = (backbone, folder / f"{arch}_radiology.weights.h5")
    return files


@pytest.mark.parametrize("form", ["mapping", "template"])
def test_per_backbone_weights_load_from_a_mapping_or_a_template(backbone_files, form):
    folder = backbone_files["resnet50"][1].parent
    weights = ({arch: path for arch, (_, path) in backbone_files.items()} if form == "mapping"
               else str(folder / "{arch}_radiology.weights.h5"))
    for arch, (source, path) in backbone_files.items():
        assert models.resolve_weights(arch, weights) == str(path)
        for expected, loaded in zip(source.get_weights(), models.build_backbone(arch, SIZE, weights).get_weights()):
            np.testing.assert_array_equal(expected, loaded)


def test_weights_mapping_must_name_the_arch_and_only_known_archs(backbone_files):
    path = backbone_files["resnet50"][1]
    with pytest.raises(ValueError, match="has no entry for densenet121"):
        models.resolve_weights("densenet121", {"resnet50": path})
    with pytest.raises(ValueError, match=r"unknown backbones \['resnet'\]"):
        models.resolve_weights("resnet50", {"resnet": path, "resnet50": path})


def test_mapping_entry_none_means_from_scratch_with_training_batchnorm(backbone_files):
    weights = {"resnet50": None, "densenet121": backbone_files["densenet121"][1]}
    assert models.resolve_weights("resnet50", weights) is None
    model = models.build_model("resnet50", SIZE, weights=weights, dropout=0.0)
    images = np.random.default_rng(1).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    assert not np.allclose(model(images, training=True), model(images, training=False))


def test_template_errors_name_the_filled_in_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="resnet50_radiology.weights.h5 .*does not exist"):
        models.resolve_weights("resnet50", str(tmp_path / "{arch}_radiology.weights.h5"))
    (tmp_path / "resnet50.npz").write_bytes(b"weights")
    with pytest.raises(ValueError, match="resnet50.npz .*must end in .h5"):
        models.resolve_weights("resnet50", tmp_path / "{arch}.npz")
