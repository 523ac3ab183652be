using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>What a model head computes on top of the transformer body.</summary>
public enum ModelHeadKind
{
    /// <summary>The bare body (HF <c>LlamaModel</c>, <c>GPT2Model</c>, <c>BertModel</c>): hidden states only.</summary>
    Base,
    /// <summary>Next-token logits over the vocabulary (<c>*ForCausalLM</c>, <c>GPT2LMHeadModel</c>).</summary>
    CausalLM,
    /// <summary>One row of label logits per sequence (<c>*ForSequenceClassification</c>).</summary>
    SequenceClassification,
}

/// <summary>
/// The result of a forward pass. Its tensors belong to the caller's dispose scope (or to nobody outside a scope);
/// <see cref="Dispose"/> releases them all.
/// </summary>
public sealed class ModelOutput : IDisposable
{
    public ModelOutput(Tensor lastHiddenState, IReadOnlyList<Tensor>? hiddenStates = null, Tensor? logits = null, Tensor? pooledOutput = null)
    {
        LastHiddenState = lastHiddenState;
        HiddenStates = hiddenStates ?? Array.Empty<Tensor>();
        Logits = logits;
        PooledOutput = pooledOutput;
    }

    /// <summary>Causal LM: [B, T, V]. Sequence classification: [B, num_labels]. Null for a base model.</summary>
    public Tensor? Logits { get; }

    /// <summary>The body's last hidden state, [B, T, H] (after the final norm for decoders).</summary>
    public Tensor LastHiddenState { get; }

    /// <summary>BERT/RoBERTa base models only: the pooler output, [B, H].</summary>
    public Tensor? PooledOutput { get; }

    /// <summary>
    /// With <c>outputHiddenStates</c>: HF's <c>hidden_states</c> tuple, num_layers + 1 entries: the embeddings, then
    /// each layer's output — for decoders the last entry is taken after the final norm, as transformers does.
    /// </summary>
    public IReadOnlyList<Tensor> HiddenStates { get; }

    internal ModelOutput WithHead(Tensor logits) => new(LastHiddenState, HiddenStates, logits, PooledOutput);

    internal ModelOutput WithPooled(Tensor pooled) => new(LastHiddenState, HiddenStates, Logits, pooled);

    private IEnumerable<Tensor> Distinct()
    {
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var t in HiddenStates.Append(LastHiddenState).Append(Logits).Append(PooledOutput))
            if (t is not null && seen.Add(t)) yield return t;
    }

    /// <summary>Moves every tensor one dispose scope out (each once, even when two properties share a tensor).</summary>
    internal ModelOutput MoveToOuterDisposeScope()
    {
        foreach (var t in Distinct()) t.MoveToOuterDisposeScope();
        return this;
    }

    /// <summary>Disposes every tensor except <paramref name="keep"/>.</summary>
    internal void DisposeAllBut(Tensor keep)
    {
        foreach (var t in Distinct()) if (!ReferenceEquals(t, keep)) t.Dispose();
    }

    public void Dispose()
    {
        foreach (var t in Distinct()) t.Dispose();
    }
}

/// <summary>Inputs of one forward pass, passed down from the head to the body.</summary>
internal sealed record ForwardArgs(Tensor InputIds, Tensor? AttentionMask, KvCache? Cache, Tensor? PositionIds,
    Tensor? TokenTypeIds, bool OutputHiddenStates);
