using System.Globalization;

namespace LoraPS.Adapters;

/// <summary>The initialisation families of PEFT's <c>init_lora_weights</c>.</summary>
public enum LoraInitKind
{
    /// <summary><c>true</c>: A ~ kaiming-uniform(a=√5) = U(±1/√in), B = 0, so the adapter starts as a no-op.</summary>
    Default,
    /// <summary><c>false</c>: torch's <c>nn.Linear</c> defaults for both A and B. The adapter is not a no-op; for debugging.</summary>
    Random,
    /// <summary><c>"gaussian"</c>: A ~ N(0, 1/r), B = 0.</summary>
    Gaussian,
    /// <summary><c>"pissa"</c> / <c>"pissa_niter_K"</c>: A, B from the top-r singular triplets of W; W keeps the residual.</summary>
    PiSSA,
    /// <summary><c>"olora"</c>: A, B from a QR decomposition of W; W keeps the residual.</summary>
    OLoRA,
    /// <summary>
    /// <c>"lora_ga"</c>: A, B from the singular vectors of the estimated full-weight gradient (LoRA-GA); W keeps
    /// W − s·B·A. It needs gradients, so only <see cref="Training.LoraGaInitializer"/> creates one.
    /// </summary>
    LoraGA,
    /// <summary>
    /// Any other PEFT value (<c>"eva"</c>, <c>"corda"</c>, <c>"loftq"</c>, <c>"orthogonal"</c>, …). Such an
    /// adapter can be loaded and saved (its weights are in the file), but LoraPS cannot initialise a new one this way.
    /// </summary>
    Other,
}

/// <summary>The value of PEFT's <c>init_lora_weights</c>.</summary>
/// <param name="Kind">The family.</param>
/// <param name="SvdIterations">For <see cref="LoraInitKind.PiSSA"/>: null for an exact SVD, or K of <c>pissa_niter_K</c> (randomised SVD with K subspace iterations).</param>
/// <param name="PeftName">The spelling for <see cref="LoraInitKind.Other"/>, written back unchanged.</param>
public sealed record LoraInit(LoraInitKind Kind, int? SvdIterations = null, string? PeftName = null)
{
    public static LoraInit Default { get; } = new(LoraInitKind.Default);
    public static LoraInit Random { get; } = new(LoraInitKind.Random);
    public static LoraInit Gaussian { get; } = new(LoraInitKind.Gaussian);
    public static LoraInit PiSSA { get; } = new(LoraInitKind.PiSSA);
    public static LoraInit OLoRA { get; } = new(LoraInitKind.OLoRA);
    public static LoraInit LoraGA { get; } = new(LoraInitKind.LoraGA);

    /// <summary>Fast PiSSA (<c>pissa_niter_K</c>): a randomised rank-r SVD with <paramref name="iterations"/> subspace iterations.</summary>
    public static LoraInit PiSSAFast(int iterations) => iterations >= 0
        ? new(LoraInitKind.PiSSA, iterations)
        : throw new ArgumentOutOfRangeException(nameof(iterations), iterations, "PiSSA subspace iterations must be 0 or more.");

    /// <summary>True when initialisation rewrites the base weight to the residual W − s·B·A.</summary>
    public bool MutatesBaseWeight => Kind is LoraInitKind.PiSSA or LoraInitKind.OLoRA or LoraInitKind.LoraGA;

    /// <summary>
    /// Parses the string forms of <c>init_lora_weights</c> (<c>"gaussian"</c>, <c>"pissa"</c>, <c>"pissa_niter_16"</c>,
    /// <c>"olora"</c>, other PEFT names). Booleans are <see cref="Default"/> (true) and <see cref="Random"/> (false).
    /// </summary>
    public static LoraInit Parse(string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(value);
        switch (value)
        {
            case "gaussian": return Gaussian;
            case "pissa": return PiSSA;
            case "olora": return OLoRA;
            case "lora_ga": return LoraGA;
        }
        const string niterPrefix = "pissa_niter_";
        if (value.StartsWith(niterPrefix, StringComparison.Ordinal))
        {
            var digits = value[niterPrefix.Length..];
            if (digits.Length > 0 && digits.All(char.IsAsciiDigit)
                && int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var k))
                return PiSSAFast(k);
            throw new FormatException($"init_lora_weights '{value}' is not valid: write 'pissa_niter_<K>' with K a nonnegative integer, e.g. 'pissa_niter_16'.");
        }
        return new(LoraInitKind.Other, null, value);
    }

    /// <summary>The JSON value PEFT writes: <c>true</c>, <c>false</c> or a string.</summary>
    public object ToPeftValue() => Kind switch
    {
        LoraInitKind.Default => true,
        LoraInitKind.Random => false,
        LoraInitKind.Gaussian => "gaussian",
        LoraInitKind.PiSSA => SvdIterations is { } k ? $"pissa_niter_{k.ToString(CultureInfo.InvariantCulture)}" : "pissa",
        LoraInitKind.OLoRA => "olora",
        LoraInitKind.LoraGA => "lora_ga",
        _ => PeftName ?? throw new InvalidOperationException("An 'Other' LoraInit needs its PEFT name."),
    };

    public override string ToString() => ToPeftValue() switch
    {
        bool b => b ? "true" : "false",
        var v => (string)v,
    };
}
