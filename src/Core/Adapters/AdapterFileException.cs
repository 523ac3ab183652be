namespace LoraPS.Adapters;

/// <summary>
/// An adapter folder that cannot be loaded onto this model: a missing or unreadable file, keys that are missing or
/// unexpected, shapes that do not fit the config or the model. The message names the file (and the key) and says what
/// to do; nothing was changed on the model.
/// </summary>
public sealed class AdapterFileException : IOException
{
    public AdapterFileException(string filePath, string message, string? key = null, Exception? inner = null)
        : base(message, inner)
    {
        FilePath = filePath;
        Key = key;
    }

    /// <summary>The file at fault (adapter_config.json or adapter_model.safetensors).</summary>
    public string FilePath { get; }

    /// <summary>The first tensor key at fault, when the problem is a key.</summary>
    public string? Key { get; }
}
