namespace LoraPS.Adapters;

/// <summary>
/// The settings of one adapter on one layer, after <c>rank_pattern</c>/<c>alpha_pattern</c> were applied: what
/// PEFT's <c>LoraLayer.update_layer</c> receives.
/// </summary>
public sealed record LoraLayerOptions
{
    readonly int _rank = 8;
    readonly double _alpha = 8;
    readonly double _dropout;
    readonly LoraInit _init = LoraInit.Default;

    /// <summary>The rank r: A is (r, in) and B is (out, r).</summary>
    public int Rank { get => _rank; init => _rank = LoraValidation.Rank(value, nameof(Rank)); }

    /// <summary>The scaling numerator α.</summary>
    public double Alpha { get => _alpha; init => _alpha = LoraValidation.Alpha(value, nameof(Alpha)); }

    /// <summary>Dropout probability on the input of the LoRA branch only (never on the base path).</summary>
    public double Dropout { get => _dropout; init => _dropout = LoraValidation.Dropout(value, nameof(Dropout)); }

    /// <summary>rsLoRA: scale by α/√r instead of α/r, so the update's magnitude does not shrink as r grows.</summary>
    public bool UseRsLora { get; init; }

    /// <summary>DoRA: a trainable per-output magnitude times the direction of W + s·B·A.</summary>
    public bool UseDora { get; init; }

    public LoraInit Init { get => _init; init => _init = value ?? throw new ArgumentNullException(nameof(Init)); }

    /// <summary>s = α/r, or α/√r with rsLoRA. Dividing by r "reduces the need to retune hyperparameters when r changes" (LoRA paper §4.1).</summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;
}

/// <summary>A linear layer that a <see cref="LoraConfig"/> selects, with the adapter settings it gets there.</summary>
/// <param name="Path">The module's HF path, e.g. <c>model.layers.0.self_attn.q_proj</c>.</param>
/// <param name="InFeatures">Input width of the layer.</param>
/// <param name="OutFeatures">Output width of the layer.</param>
/// <param name="Options">Rank, alpha, dropout, variant and init for this layer.</param>
public sealed record LoraTarget(string Path, long InFeatures, long OutFeatures, LoraLayerOptions Options)
{
    public int Rank => Options.Rank;
    public double Alpha => Options.Alpha;
    public double Scaling => Options.Scaling;
}

/// <summary>What <see cref="LoraConfig.Resolve"/> found.</summary>
/// <param name="Config">
/// The config to save with the adapter: <c>"all-linear"</c> and an unset <c>target_modules</c> are replaced by the
/// concrete module names, as PEFT saves them.
/// </param>
/// <param name="Targets">The matched layers, in the order they were given.</param>
public sealed record LoraResolution(LoraConfig Config, IReadOnlyList<LoraTarget> Targets);

/// <summary>The range checks shared by <see cref="LoraConfig"/> and <see cref="LoraLayerOptions"/>.</summary>
internal static class LoraValidation
{
    public static int Rank(int value, string name) => value >= 1
        ? value
        : throw new ArgumentOutOfRangeException(name, value, $"The LoRA rank r must be at least 1, got {value}.");

    public static double Alpha(double value, string name) => value > 0 && double.IsFinite(value)
        ? value
        : throw new ArgumentOutOfRangeException(name, value, $"LoRA alpha must be a positive finite number, got {value}. The update is scaled by alpha/r, so alpha <= 0 would remove or flip it.");

    public static double Dropout(double value, string name) => value >= 0 && value < 1
        ? value
        : throw new ArgumentOutOfRangeException(name, value, $"LoRA dropout is a probability in [0, 1), got {value}.");
}
