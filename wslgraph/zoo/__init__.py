"""Model zoos: image sources, batched INR fitting, vectorized CNN training (Small CNN Zoo and Model Zoos grids,
small ResNets), storage, datasets, published formats."""

from wslgraph.weightspace.augment import (
    AUGMENT_PRESETS,
    Augmentation,
    Compose,
    GaussianNoise,
    INRAffine,
    RandomHiddenPermutation,
    RandomSignFlip,
    WeightDropout,
    augmentation,
)
from wslgraph.zoo.architectures import BasicBlock, Bottleneck, ResNet, mlp, resnet, siren, small_cnn, tiny_resnet
from wslgraph.zoo.cnn import CNNZooSpec, ZooCNN, ZooSchedule, train_cnn_zoo
from wslgraph.zoo.data import ImageSet, load_images
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.inr import RECIPES, FitOptions, INRFit, INRRecipe, fit_inr_reference, fit_inrs, render_inrs
from wslgraph.zoo.jobs import cnn_zoo_job, inr_zoo_job, model_zoo_job, resnet_zoo_job
from wslgraph.zoo.modelzoos import GRID, ModelZooCNN, load_model_zoos, train_model_zoo
from wslgraph.zoo.published import load_dws_inrs, load_nfn_sirens, load_small_cnn_zoo
from wslgraph.zoo.resnets import RESNET_GRID, train_resnet_zoo
from wslgraph.zoo.storage import ZooArrays, ZooJob, finalize_zoo, generate_zoo, load_zoo_arrays, write_zoo

__all__ = [
    "mlp", "siren", "small_cnn", "BasicBlock", "Bottleneck", "ResNet", "resnet", "tiny_resnet",
    "ImageSet", "load_images",
    "INRRecipe", "RECIPES", "FitOptions", "INRFit", "fit_inrs", "fit_inr_reference", "render_inrs",
    "CNNZooSpec", "ZooCNN", "ZooSchedule", "train_cnn_zoo",
    "ZooJob", "ZooArrays", "generate_zoo", "finalize_zoo", "write_zoo", "load_zoo_arrays",
    "inr_zoo_job", "cnn_zoo_job", "model_zoo_job", "resnet_zoo_job", "RESNET_GRID", "train_resnet_zoo",
    "ModelZooCNN", "GRID", "train_model_zoo", "load_model_zoos",
    "ZooDataset", "Augmentation", "Compose", "RandomHiddenPermutation", "RandomSignFlip", "augmentation",
    "AUGMENT_PRESETS", "GaussianNoise", "WeightDropout", "INRAffine",
    "load_dws_inrs", "load_nfn_sirens", "load_small_cnn_zoo",
]
