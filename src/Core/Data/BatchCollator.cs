using static TorchSharp.torch;

namespace LoraPS.Data;

/// <summary>How examples are padded into tensors.</summary>
public sealed record CollateOptions
{
    /// <summary>The id written into padded input positions: 0, as LitGPT's collate (attention_mask hides it anyway).</summary>
    public long PadId { get; init; }

    /// <summary>The label of padded positions, ignored by the loss.</summary>
    public long IgnoreIndex { get; init; } = -100;

    /// <summary>Round the padded length up to a multiple of this (e.g. 8 for tensor cores); null pads to the longest example.</summary>
    public int? PadToMultipleOf { get; init; }

    /// <summary>Where the tensors go; null keeps them on the CPU.</summary>
    public Device? Device { get; init; }
}

/// <summary>
/// One padded micro-batch: int64 tensors, right-padded. <see cref="Labels"/> is [B, T] for language modelling
/// (padding −100) and [B] of class ids for classification. Disposing it frees the tensors.
/// </summary>
public sealed class TrainingBatch : IDisposable
{
    internal TrainingBatch(Tensor inputIds, Tensor labels, Tensor attentionMask, Tensor? tokenTypeIds, PaddingStats padding, long labelTokens)
    {
        InputIds = inputIds;
        Labels = labels;
        AttentionMask = attentionMask;
        TokenTypeIds = tokenTypeIds;
        Padding = padding;
        LabelTokens = labelTokens;
    }

    /// <summary>[B, T] token ids, padded with the pad id.</summary>
    public Tensor InputIds { get; }

    /// <summary>[B, T] labels padded with the ignore index, or [B] class ids.</summary>
    public Tensor Labels { get; }

    /// <summary>[B, T]: 1 on real tokens, 0 on padding.</summary>
    public Tensor AttentionMask { get; }

    /// <summary>[B, T] segment ids for classification (padding 0); null for language modelling.</summary>
    public Tensor? TokenTypeIds { get; }

    public int BatchSize => (int)InputIds.shape[0];

    public int SequenceLength => (int)InputIds.shape[1];

    /// <summary>Real tokens and padding in this batch.</summary>
    public PaddingStats Padding { get; }

    /// <summary>
    /// Language modelling: label positions the shifted loss will use (not ignored, and not a row's first position,
    /// which no token predicts) — the denominator of the mean loss. Classification: the batch size.
    /// </summary>
    public long LabelTokens { get; }

    public void Dispose()
    {
        InputIds.Dispose();
        Labels.Dispose();
        AttentionMask.Dispose();
        TokenTypeIds?.Dispose();
    }
}

/// <summary>Pads tokenized examples into a <see cref="TrainingBatch"/> (LitGPT's <c>_sft_collate_fn</c> plus an attention mask).</summary>
public static class BatchCollator
{
    /// <summary>Pads <paramref name="examples"/> on the right to the longest one (or the next multiple).</summary>
    /// <exception cref="ArgumentException">No examples, or language-modelling and classification examples mixed.</exception>
    public static TrainingBatch Collate(IReadOnlyList<TokenizedExample> examples, CollateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(examples);
        options ??= new CollateOptions();
        if (examples.Count == 0)
        {
            throw new ArgumentException("A batch needs at least one example.", nameof(examples));
        }
        bool classification = examples[0].ClassLabel is not null;
        if (examples.Any(e => (e.ClassLabel is not null) != classification))
        {
            throw new ArgumentException("A batch cannot mix classification and language-modelling examples.", nameof(examples));
        }

        int batch = examples.Count;
        int length = examples.Max(e => e.Length);
        if (options.PadToMultipleOf is int multiple)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(multiple, 1, nameof(options));
            length = (length + multiple - 1) / multiple * multiple;
        }

        var inputIds = new long[batch * length];
        var mask = new long[batch * length];
        long[] labels = classification ? new long[batch] : new long[batch * length];
        long[]? types = classification ? new long[batch * length] : null;
        Array.Fill(inputIds, options.PadId);
        if (!classification)
        {
            Array.Fill(labels, options.IgnoreIndex);
        }
        long real = 0;
        long labelTokens = 0;
        for (int b = 0; b < batch; b++)
        {
            TokenizedExample e = examples[b];
            int row = b * length;
            e.InputIds.CopyTo(inputIds, row);
            Array.Fill(mask, 1L, row, e.Length);
            real += e.Length;
            if (classification)
            {
                labels[b] = e.ClassLabel!.Value;
                e.TokenTypeIds?.CopyTo(types!, row);
                labelTokens++;
            }
            else
            {
                e.Labels.CopyTo(labels, row);
                for (int t = 1; t < e.Labels.Length; t++)
                {
                    if (e.Labels[t] != options.IgnoreIndex)
                    {
                        labelTokens++;
                    }
                }
            }
        }

        // torch.tensor copies the array (straight to the device when one is given), so no CPU temporaries remain.
        Tensor Make(long[] data, params long[] shape) => tensor(data, shape, ScalarType.Int64, options.Device);
        return new TrainingBatch(
            Make(inputIds, batch, length),
            classification ? Make(labels, batch) : Make(labels, batch, length),
            Make(mask, batch, length),
            types is null ? null : Make(types, batch, length),
            new PaddingStats(real, (long)batch * length - real),
            labelTokens);
    }
}
