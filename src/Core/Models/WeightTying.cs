using TorchSharp.Modules;

namespace LoraPS.Models;

/// <summary>Makes an output projection share the input embedding's weight (<c>tie_word_embeddings</c>).</summary>
internal static class WeightTying
{
    /// <remarks>
    /// The two modules then hold the same Parameter object, so TorchSharp's named_parameters/state_dict list it once,
    /// under the embedding's name — matching checkpoints, which store tied weights once (safetensors forbids aliases).
    /// </remarks>
    /// <returns>The head's previous weight, which the caller disposes once nothing else holds it (TorchSharp's setter
    /// still touches it, so it must be alive here), or null when already tied.</returns>
    public static Parameter? Tie(Linear head, EmbeddingTable embedding)
    {
        var old = head.weight;
        if (ReferenceEquals(old, embedding.weight)) return null;
        head.weight = embedding.weight;
        return old;
    }
}
