from hitcodec.models.ghvae import BETA_MAX, BETA_MIN, GHVAE, GHVAEConfig, ghvae_loss, pad_to_stride

__all__ = ["BETA_MAX", "BETA_MIN", "GHVAE", "GHVAEConfig", "ghvae_loss", "pad_to_stride"]
