"""Training in stages (VAE -> encode -> feature predictor -> latent denoiser) with Lightning and TOML presets."""

from generator.training.config import TrainConfig, load_config, preset_names
from generator.training.stages import BUNDLE_NAME, generate_shape, stage_losses, train_pipeline

__all__ = ["TrainConfig", "load_config", "preset_names", "train_pipeline", "stage_losses", "BUNDLE_NAME", "generate_shape"]
