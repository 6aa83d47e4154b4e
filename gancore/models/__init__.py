"""Network architectures: generators, discriminators and critics that families assemble."""

from gancore.models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from gancore.models.mlp import MLPCritic, MLPGenerator
from gancore.models.pix2pix import (
                                    NLayerDiscriminator,
                                    PixelDiscriminator,
                                    ResnetBlock,
                                    ResnetGenerator,
                                    UnetGenerator,
                                    UnetSkipConnectionBlock,
                                    init_weights_,
)

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "MLPCritic", "MLPGenerator", "NLayerDiscriminator",
           "PixelDiscriminator", "ResnetBlock", "ResnetGenerator", "UnetGenerator", "UnetSkipConnectionBlock",
           "dcgan_init_", "init_weights_"]
