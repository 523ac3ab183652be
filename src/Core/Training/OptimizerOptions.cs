namespace LoraPS.Training;

/// <summary>The optimizers LoraPS trains with.</summary>
public enum OptimizerKind
{
    /// <summary>torch.optim.AdamW: Adam with decoupled weight decay (LitGPT's and PEFT's default).</summary>
    AdamW,

    /// <summary>torch.optim.SGD with optional (Nesterov) momentum.</summary>
    Sgd,

    /// <summary>
    /// bitsandbytes' <c>AdamW8bit</c>: AdamW with m and v stored in 8 bits (blockwise, 256 per block, dynamic maps),
    /// fp32 state for parameters under 4096 elements. About 2 bytes of state per parameter instead of 8.
    /// </summary>
    AdamW8bit,
}

/// <summary>
/// Optimizer settings with torch's names and defaults. LitGPT's CLI passes AdamW no arguments, so torch's defaults apply
/// (lr 1e-3, weight decay 0.01, betas 0.9/0.999); its config_hub recipes use lr 2e-4, weight decay 0, betas 0.9/0.95.
/// </summary>
public sealed record OptimizerOptions
{
    public OptimizerKind Kind { get; init; } = OptimizerKind.AdamW;

    /// <summary>The peak learning rate; the schedule scales it step by step.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>AdamW: decay of the first moment.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW: decay of the second moment.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>AdamW: added to √v̂ in the denominator.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>
    /// Weight decay; null means torch's default for the kind: 0.01 for AdamW (and bnb's AdamW8bit) (decoupled, p ← p·(1 − lr·wd)), 0 for SGD
    /// (L2: added to the gradient).
    /// </summary>
    public double? WeightDecay { get; init; }

    /// <summary>SGD: momentum factor (0 = plain SGD).</summary>
    public double Momentum { get; init; }

    /// <summary>SGD: dampening of the momentum buffer update.</summary>
    public double Dampening { get; init; }

    /// <summary>SGD: Nesterov momentum (needs momentum &gt; 0 and dampening 0, as in torch).</summary>
    public bool Nesterov { get; init; }

    /// <summary>The weight decay this kind uses.</summary>
    public double EffectiveWeightDecay => WeightDecay ?? (Kind is OptimizerKind.AdamW or OptimizerKind.AdamW8bit ? 0.01 : 0.0);

    /// <summary>Throws with torch's rules for invalid values.</summary>
    public void Validate()
    {
        static void Check(bool ok, string name, double value, string rule)
        {
            if (!ok) throw new ArgumentOutOfRangeException(name, value, $"Optimizer {name} {value} is invalid: it must be {rule}.");
        }
        Check(double.IsFinite(LearningRate) && LearningRate >= 0, nameof(LearningRate), LearningRate, "≥ 0");
        Check(Beta1 is >= 0 and < 1, nameof(Beta1), Beta1, "in [0, 1)");
        Check(Beta2 is >= 0 and < 1, nameof(Beta2), Beta2, "in [0, 1)");
        Check(Epsilon >= 0, nameof(Epsilon), Epsilon, "≥ 0");
        Check(EffectiveWeightDecay >= 0, nameof(WeightDecay), EffectiveWeightDecay, "≥ 0");
        Check(Momentum >= 0, nameof(Momentum), Momentum, "≥ 0");
        if (Nesterov && (Momentum <= 0 || Dampening != 0))
            throw new ArgumentException("Nesterov momentum requires Momentum > 0 and Dampening = 0 (as torch.optim.SGD).", nameof(Nesterov));
    }
}
