namespace LoraPS.Generation;

/// <summary>
/// How the next token is chosen from the logits, with Hugging Face <c>generate</c>'s semantics: temperature 0 is
/// greedy decoding (HF's default, <c>do_sample=False</c>); otherwise logits are divided by the temperature, then
/// filtered by top-k, then by top-p (nucleus), and a token is drawn from what remains.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>0 = greedy. Must be ≥ 0.</summary>
    public double Temperature { get; init; }

    /// <summary>Keep only the k most likely tokens; 0 = no limit.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose probability mass reaches p; 1 = no limit.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Seed of the sampling generator; null = nondeterministic.</summary>
    public long? Seed { get; init; }

    public bool IsGreedy => Temperature == 0;

    /// <summary>Throws <see cref="ArgumentException"/> with a message that says which value is wrong and why.</summary>
    public void Validate()
    {
        if (double.IsNaN(Temperature) || Temperature < 0)
            throw new ArgumentException($"Temperature must be 0 (greedy) or positive; got {Temperature}.", nameof(Temperature));
        if (TopK < 0)
            throw new ArgumentException($"TopK must be 0 (no limit) or positive; got {TopK}.", nameof(TopK));
        if (double.IsNaN(TopP) || TopP <= 0 || TopP > 1)
            throw new ArgumentException($"TopP must be in (0, 1]; got {TopP}.", nameof(TopP));
    }
}
