"""Customer context: onboarding with KYC, customer reads and updates."""
