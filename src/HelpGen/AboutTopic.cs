namespace LoraPS.HelpGen;

/// <summary>Fills the generated command list into the hand-written about_LoraPS template.</summary>
public static class AboutTopic
{
    /// <summary>The line in the template that is replaced by the list of cmdlets and their synopses.</summary>
    public const string Placeholder = "{{COMMANDS}}";

    public static string Fill(string template, IEnumerable<CommandHelp> commands)
    {
        if (!template.Contains(Placeholder))
            throw new InvalidDataException($"The about_LoraPS template has no {Placeholder} line where the command list goes.");
        var list = commands.ToList();
        int width = list.Count == 0 ? 0 : list.Max(c => c.Name.Length) + 2;
        var lines = list.Select(c => "    " + c.Name.PadRight(width) + c.Synopsis);
        return template.Replace(Placeholder, string.Join(Environment.NewLine, lines).TrimStart());
    }
}
