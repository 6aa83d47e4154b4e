"""Network architectures: generators, discriminators and critics that families assemble."""

from gancore.models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from gancore.models.mlp import MLPCritic, MLPGenerator
from gancore.models.pix2pixhd import (
    Encoder,
    GlobalGenerator,
    LocalEnhancer,
    MultiscaleDiscriminator,
    NLayerDiscriminator,
)
from gancore.models.srgan import SRGANDiscriminator, SRResNet
from gancore.models.stargan import StarGANDiscriminator, StarGANGenerator
from gancore.models.vgg import VGG19Features

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "MLPCritic", "MLPGenerator", "dcgan_init_"]
__all__ += ["Encoder", "GlobalGenerator", "LocalEnhancer", "MultiscaleDiscriminator", "NLayerDiscriminator"]
__all__ += ["SRGANDiscriminator", "SRResNet", "StarGANDiscriminator", "StarGANGenerator", "VGG19Features"]
