"""Networks: our VAE, feature predictor and latent UNet (``microgen3d`` holds replicas of MicroGen3D's)."""

from generator.models.feature_predictor import FeaturePredictor, FeaturePredictorConfig
from generator.models.unet import LatentUNet, LatentUNetConfig
from generator.models.vae import VAE, VAEConfig

__all__ = ["VAE", "VAEConfig", "FeaturePredictor", "FeaturePredictorConfig", "LatentUNet", "LatentUNetConfig"]
