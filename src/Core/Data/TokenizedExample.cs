namespace LoraPS.Data;

/// <summary>
/// One example as token ids, ready for batching.
/// <para>Language modelling / instruction tuning: <see cref="Labels"/> has one entry per input position — the
/// input id itself, or the ignore index (−100) where the loss must not look (the prompt, with MaskPrompt). The
/// loss shifts by one (position t predicts label t+1), as in LitGPT and transformers.</para>
/// <para>Classification: <see cref="Labels"/> is empty and <see cref="ClassLabel"/> holds the class id;
/// <see cref="TokenTypeIds"/> marks the second text of a pair for BERT-style models.</para>
/// </summary>
public sealed record TokenizedExample(long[] InputIds, long[] Labels, int PromptLength)
{
    /// <summary>The class id of a classification example; null for language-modelling examples.</summary>
    public long? ClassLabel { get; init; }

    /// <summary>Segment ids (0 for the first text, 1 for the second with BERT); null when not classification.</summary>
    public long[]? TokenTypeIds { get; init; }

    /// <summary>Whether the example was cut to MaxSeqLength.</summary>
    public bool Truncated { get; init; }

    public int Length => InputIds.Length;
}

/// <summary>How examples become token ids (LitGPT's SFTDataset settings).</summary>
public sealed record TokenizationOptions
{
    /// <summary>The instruction template; LitGPT's Alpaca data module default.</summary>
    public IPromptStyle PromptStyle { get; init; } = PromptStyles.Alpaca;

    /// <summary>
    /// Compute the loss only on the response: prompt labels become <see cref="IgnoreIndex"/>. Off by default, as in
    /// LitGPT's Alpaca data module (its SFTDataset class defaults to on).
    /// </summary>
    public bool MaskPrompt { get; init; }

    /// <summary>Cut longer examples to this many tokens; null keeps every token (LitGPT's default).</summary>
    public int? MaxSeqLength { get; init; }

    /// <summary>The label value the loss ignores: −100, PyTorch's cross-entropy default.</summary>
    public int IgnoreIndex { get; init; } = -100;
}

/// <summary>A tokenized dataset and what tokenization did to it.</summary>
public sealed class TokenizedDataset : IReadOnlyList<TokenizedExample>
{
    private readonly IReadOnlyList<TokenizedExample> _examples;

    public TokenizedDataset(IReadOnlyList<TokenizedExample> examples, int ignoreIndex = -100)
    {
        ArgumentNullException.ThrowIfNull(examples);
        _examples = examples;
        Lengths = examples.Select(e => e.Length).ToArray();
        TruncatedCount = examples.Count(e => e.Truncated);
        NoTargetCount = examples.Count(e => e.ClassLabel is null && e.Labels.Skip(1).All(l => l == ignoreIndex));
        TotalTokens = Lengths.Sum(l => (long)l);
        MaxLength = Lengths.Length == 0 ? 0 : Lengths.Max();
    }

    public int Count => _examples.Count;

    public TokenizedExample this[int index] => _examples[index];

    /// <summary>The token count of every example, in order (what the batch sampler groups by).</summary>
    public int[] Lengths { get; }

    /// <summary>How many examples were cut to MaxSeqLength.</summary>
    public int TruncatedCount { get; }

    /// <summary>
    /// Language-modelling examples with no label the loss can use (every label after the first is ignored):
    /// with MaskPrompt, a prompt that fills the whole MaxSeqLength leaves no response to learn from.
    /// </summary>
    public int NoTargetCount { get; }

    public long TotalTokens { get; }

    public int MaxLength { get; }

    public IEnumerator<TokenizedExample> GetEnumerator() => _examples.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
