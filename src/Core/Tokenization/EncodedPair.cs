namespace LoraPS.Tokenization;

/// <summary>
/// One or two texts laid out for a model: the token ids and, per position, the token type (segment) id —
/// BERT gives the first text and its [CLS]/[SEP] type 0 and the second text type 1; RoBERTa uses 0 throughout.
/// </summary>
public sealed record EncodedPair(IReadOnlyList<int> Ids, IReadOnlyList<int> TokenTypeIds);
