//! Specialist segmentation networks (V-Net, 3D U-Net).
