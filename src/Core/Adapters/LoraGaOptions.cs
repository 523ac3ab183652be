namespace LoraPS.Adapters;

/// <summary>Which singular vectors of the gradient go into A and which into B (LoRA-GA <c>direction</c>).</summary>
public enum LoraGaDirection
{
    /// <summary>A = the top r right singular vectors, B = left singular vectors r..2r−1 (the default).</summary>
    ArB2r,
    /// <summary>A = right singular vectors r..2r−1, B = the top r left singular vectors.</summary>
    A2rBr,
    /// <summary>B = left singular vectors 0, 2, 4, …; A = right singular vectors 1, 3, 5, ….</summary>
    ArBr,
    /// <summary>A random split of the indices 0..2r−1 between A and B (seeded).</summary>
    Random,
}

/// <summary>How A and B are scaled after they are picked (LoRA-GA <c>scale</c>).</summary>
public enum LoraGaScale
{
    /// <summary>Stable output: × d_out^¼/√γ (the default; meant to be used with rsLoRA).</summary>
    Stable,
    /// <summary>Divide by the adapter's scaling, so s·B·A matches a gradient-descent step's scale.</summary>
    GD,
    /// <summary>No scaling: orthonormal singular vectors.</summary>
    Unit,
    /// <summary>× mean √(S_W[:r]/s) of the weight's own singular values (official); B × S_W[0]/S_B[0] (PEFT).</summary>
    WeightS,
}

/// <summary>Which implementation's formulas to follow.</summary>
public enum LoraGaVariant
{
    /// <summary>The paper's code (Outsider565/LoRA-GA): orthonormal singular vectors, A and B both scaled.</summary>
    Official,
    /// <summary>HF PEFT's <c>lora_ga</c>: B also carries the singular values, the stable scale goes on B only, and A, B are cast to the base dtype.</summary>
    Peft,
}

/// <summary>
/// Settings of a LoRA-GA initialisation (spec notes §2): the gradient estimate (Batches × BatchSize examples) and how
/// A and B are made from its singular vectors. Defaults are the official <c>LoraGAConfig</c>'s.
/// </summary>
public sealed record LoraGaOptions
{
    /// <summary>Batches whose gradients are averaged (official <c>iters</c>, 64).</summary>
    public int Batches { get; init; } = 64;

    /// <summary>Examples per batch (official <c>bsz</c>, 2).</summary>
    public int BatchSize { get; init; } = 2;

    public LoraGaDirection Direction { get; init; } = LoraGaDirection.ArB2r;

    public LoraGaScale Scale { get; init; } = LoraGaScale.Stable;

    /// <summary>γ of the stable scale (official 16).</summary>
    public double StableGamma { get; init; } = 16;

    public LoraGaVariant Variant { get; init; } = LoraGaVariant.Official;

    /// <summary>
    /// Subspace iterations of the randomized SVD (torch <c>svd_lowrank</c> with q = min(4r, min(m, n)), as the official
    /// code uses niter = 4); null runs an exact SVD in float64 with a fixed sign convention instead.
    /// </summary>
    public int? SvdIterations { get; init; } = 4;

    /// <summary>Seed of the batch order, the randomized SVD and the Random direction.</summary>
    public long Seed { get; init; } = 42;

    /// <summary>Throws for settings that cannot work.</summary>
    public void Validate()
    {
        if (Batches < 1) throw new ArgumentOutOfRangeException(nameof(Batches), Batches, "LoRA-GA needs at least one batch to estimate the gradient.");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "The batch size must be at least 1.");
        if (!(StableGamma > 0) || !double.IsFinite(StableGamma)) throw new ArgumentOutOfRangeException(nameof(StableGamma), StableGamma, "StableGamma must be a positive number (the official default is 16).");
        if (SvdIterations is < 0) throw new ArgumentOutOfRangeException(nameof(SvdIterations), SvdIterations, "SvdIterations must be 0 or more, or null for an exact SVD.");
    }
}
