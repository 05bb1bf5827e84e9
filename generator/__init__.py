"""microdesign.generator: physics data engine, GraSPI-exact descriptors and the latent diffusion generator.

Sub-packages
------------
physics      Cahn-Hilliard simulator and phase labelling.
io           Volume files (.npy, .npz, .vti, .tif) and atomic writes.
data         HDF5 datasets in the MicroGen3D layout and the torch ``Dataset``.
descriptors  GraSPI-exact morphology descriptors.
models       VAE, feature predictor and latent UNet (ours and MicroGen3D's).
diffusion    Noise schedules and samplers (diffusers) and guidance.
training     Lightning training stages and validated TOML presets.
"""

__version__ = "0.1.0"
