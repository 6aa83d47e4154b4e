"""Network architectures: generators, discriminators and critics that families assemble."""

from gancore.models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from gancore.models.mlp import MLPCritic, MLPGenerator

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "MLPCritic", "MLPGenerator", "dcgan_init_"]
